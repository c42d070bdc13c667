#!/usr/bin/env bash
# `make soak`: the static binary's memory under a mixed load that stops and starts, as a
# service's traffic does. SOAK_BURSTS bursts of SOAK_SECONDS each (default 5 x 25 s), SOAK_PAUSE
# seconds apart (default 12, past the blocking threads' 10 s idle end): wrk's connections greet
# over 10,000 names and ask /, /health, /counts?limit=20, a 404, a 301 and /metrics, while
# malformed clients come and go. After each
# burst and its pause: the server's RSS and threads. SOAK_BINARY=<path> measures another build.
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

BURSTS=${SOAK_BURSTS:-5}
SECONDS_PER_BURST=${SOAK_SECONDS:-25}
PAUSE=${SOAK_PAUSE:-12}
need_packages redis-server:redis-server wrk:wrk curl:curl
binary=${SOAK_BINARY:-}
if [ -z "$binary" ]; then
  make --no-print-directory static >/dev/null
  binary=target/x86_64-unknown-linux-musl/release/hello
fi

scratch
field() { awk -v f="$1" '$1 == f {print $2}' "/proc/$2/status"; }
# A gauge from the server's /metrics.
gauge() { curl -s "http://127.0.0.1:$port/metrics" | awk -v g="$1" '$1 == g {print $2}'; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
pids+=($!)
wait_port "$redis_port"
port=$(free_port)
HOST=127.0.0.1 PORT=$port REDIS_CLUSTER_ADDRESS=127.0.0.1:$redis_port RUST_LOG=warn DEBUG=true \
  "$binary" 2>"$work/hello.log" &
hello=$!
pids+=($hello)
wait_port "$port"

# Each wrk connection walks the mix; a greeting's name cycles over 10,000.
cat >"$work/mix.lua" <<'LUA'
local paths = {"/", "/health", "/counts?limit=20", "/nope", "//health", "/metrics"}
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("GET", "/hello/soak-" .. (n % 10000))
  end
  return wrk.format("GET", paths[math.floor(n / 2) % #paths + 1])
end
LUA

# Malformed clients: a bad request line, an oversized head, a half head left to time out.
malformed() {
  local until=$((SECONDS + SECONDS_PER_BURST))
  while [ "$SECONDS" -lt "$until" ]; do
    { printf 'GARBAGE\r\n\r\n' >&3; cat <&3 >/dev/null; } 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
    { printf 'GET / HTTP/1.1\r\nHost: t\r\nX: %20000s\r\n\r\n' '' >&3; cat <&3 >/dev/null; } 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
    { printf 'GET / HTTP/1.1\r\n' >&3; } 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
    sleep 0.05
  done
}

echo "== soak: $BURSTS bursts of ${SECONDS_PER_BURST}s (wrk -t2 -c64, mixed routes, malformed clients), ${PAUSE}s apart =="
echo "binary: $binary ($(stat -c %s "$binary") bytes)"
printf '%-8s %10s %8s %8s %12s %12s\n' after "req/s" "RSS kB" threads "connections" "Redis conns"
printf '%-8s %10s %8s %8s %12s %12s\n' start - "$(field VmRSS: "$hello")" "$(field Threads: "$hello")" \
  "$(gauge hello_http_connections_open)" "$(gauge hello_redis_connections_open)"
for burst in $(seq "$BURSTS"); do
  malformed &
  bad=$!
  wrk -t2 -c64 -d"${SECONDS_PER_BURST}s" -s "$work/mix.lua" "http://127.0.0.1:$port" >"$work/wrk-$burst.txt" 2>&1 || true
  wait "$bad" 2>/dev/null || true
  sleep "$PAUSE"
  printf '%-8s %10s %8s %8s %12s %12s\n' "burst $burst" "$(awk '/^Requests\/sec/ {print $2}' "$work/wrk-$burst.txt")" \
    "$(field VmRSS: "$hello")" "$(field Threads: "$hello")" \
    "$(gauge hello_http_connections_open)" "$(gauge hello_redis_connections_open)"
done
echo "peak RSS: $(field VmHWM: "$hello") kB"
