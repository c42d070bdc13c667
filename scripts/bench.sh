#!/usr/bin/env bash
# `make bench`: one run, side by side, on this machine.
#   /hello/{name} under wrk -t2 -c64: hello (default build and static musl) vs webdis doing the
#   same ZINCRBY per request, on one private redis-server; requests/s, p50/p99, server RSS, and
#   whether every 200 was stored.
#   /counts over 1,000,000 names: time and peak RSS, vs redis-cli ZRANGE on the same set.
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
NAMES=${BENCH_NAMES:-1000000}
need_packages redis-server:redis-server wrk:wrk webdis:webdis curl:curl
ensure_musl_target
cargo build --release --quiet
cargo build --release --quiet --target x86_64-unknown-linux-musl

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened"; exit 1; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
pids+=($!)
wait_port "$redis_port"
rcli() { redis-cli -p "$redis_port" "$@"; }

# run_wrk LABEL PID URL KEY: prints one table row; checks stored increments against 200s.
run_wrk() {
  local label=$1 pid=$2 url=$3 key=$4
  rcli DEL "$key" >/dev/null
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$work/wrk.txt" 2>&1 || true
  sleep 0.5
  local rps p50 p99 requests non2xx stored
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
  requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.txt"); non2xx=${non2xx:-0}
  stored=$(rcli ZSCORE "$key" bench); stored=${stored:-0}
  printf '%-22s %10s %9s %9s %9s %10s %10s %8s\n' "$label" "$rps" "$p50" "$p99" "$(($(rss_kb "$pid") / 1024))MB" "$requests" "$stored" "$non2xx"
  echo "$rps" >"$work/rps-$label"
}

echo
echo "== /hello/{name}: wrk -t2 -c$CONNECTIONS -d${DURATION}s, one private redis-server =="
printf '%-22s %10s %9s %9s %9s %10s %10s %8s\n' server req/s p50 p99 RSS answered stored non-2xx

for build in release x86_64-unknown-linux-musl/release; do
  port=$(free_port)
  HOST=127.0.0.1 PORT=$port REDIS_CLUSTER_ADDRESS=127.0.0.1:$redis_port RUST_LOG=warn \
    "target/$build/hello" 2>"$work/hello.log" &
  pid=$!; pids+=($pid)
  wait_port "$port"
  label="hello ($( [ "$build" = release ] && echo glibc || echo static musl))"
  run_wrk "$label" "$pid" "http://127.0.0.1:$port/hello/bench" nytimes.names
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
done

webdis_port=$(free_port)
cat >"$work/webdis.json" <<JSON
{"redis_host": "127.0.0.1", "redis_port": $redis_port, "http_host": "127.0.0.1",
 "http_port": $webdis_port, "threads": 2, "pool_size": 20, "daemonize": false,
 "database": 0, "verbosity": 0, "logfile": "$work/webdis.log"}
JSON
webdis "$work/webdis.json" &
wpid=$!; pids+=($wpid)
wait_port "$webdis_port"
run_wrk "webdis" "$wpid" "http://127.0.0.1:$webdis_port/ZINCRBY/webdis.names/1/bench" webdis.names
kill "$wpid"

hello_rps=$(cat "$work/rps-hello (static musl)")
webdis_rps=$(cat "$work/rps-webdis")
echo "static hello / webdis throughput: $(python3 -c "print(f'{$hello_rps/$webdis_rps:.2f}x')")"
echo "static binary: $(stat -c %s target/x86_64-unknown-linux-musl/release/hello) bytes"

echo
echo "== /counts with $NAMES names (static musl build) vs redis-cli =="
rcli DEL nytimes.names >/dev/null
python3 - "$NAMES" <<'PY' | rcli --pipe >/dev/null
import sys
n = int(sys.argv[1])
out = sys.stdout
for start in range(0, n, 1000):
    args = ["ZADD", "nytimes.names"]
    for i in range(start, min(start + 1000, n)):
        args += [str(i % 97 + 1), f"name-{i:07d}"]
    out.write(f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args))
PY
echo "names stored: $(rcli ZCARD nytimes.names)"
port=$(free_port)
HOST=127.0.0.1 PORT=$port REDIS_CLUSTER_ADDRESS=127.0.0.1:$redis_port RUST_LOG=warn \
  target/x86_64-unknown-linux-musl/release/hello 2>"$work/hello.log" &
pid=$!; pids+=($pid)
wait_port "$port"
sleep 1.5
before=$(rss_kb "$pid")
start=$(date +%s.%N)
bytes=$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/counts")
end=$(date +%s.%N)
after=$(hwm_kb "$pid")
printf 'hello /counts:          %.3f s, %s bytes; RSS %s MB before, peak %s MB (growth %s MB)\n' \
  "$(python3 -c "print($end - $start)")" "$bytes" "$((before / 1024))" "$((after / 1024))" "$(((after - before) / 1024))"
start=$(date +%s.%N)
rcli ZRANGE nytimes.names 0 -1 WITHSCORES >/dev/null
end=$(date +%s.%N)
printf 'redis-cli ZRANGE:       %.3f s\n' "$(python3 -c "print($end - $start)")"
echo "idle RSS of hello: $(( $(rss_kb "$pid") / 1024 )) MB (after the listing)"
