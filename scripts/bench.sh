#!/usr/bin/env bash
# `make bench`: one run, side by side, on this machine.
#   /hello/{name} under wrk -t2 -c64: hello (default build and static musl) vs webdis doing the
#   same ZINCRBY per request, on one private redis-server; requests/s, p50/p99, server RSS, and
#   whether every 200 was stored. BENCH_BASELINE=<binary> adds a row for another build.
#   /counts over 1,000,000 names: time and peak RSS, vs redis-cli ZRANGE on the same set.
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DURATION=${BENCH_DURATION:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
NAMES=${BENCH_NAMES:-1000000}
need_packages redis-server:redis-server wrk:wrk webdis:webdis curl:curl nginx:nginx-light
ensure_musl_target
cargo build --release --quiet
cargo build --release --quiet --target x86_64-unknown-linux-musl

scratch

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system, clock ticks) of a process with all its threads and child processes
# (nginx's workers). comm fields here have no spaces, so fields 14 and 15 are utime and stime.
cpu_ticks() { local t=0 p; for p in "$@" $(pgrep -P "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
# Context switches (voluntary and not) of a process's threads and its child processes' threads.
switches() {
  local t=0 p
  for p in "$@" $(pgrep -P "$1"); do
    t=$((t + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')))
  done
  echo "$t"
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
redis_pid=$!
pids+=($!)
wait_port "$redis_port"
rcli() { redis-cli -p "$redis_port" "$@"; }

# Each server gets its own key; rounds alternate between servers so that the machine's drift
# hits them alike. Reports the median round, the peak RSS, and answered vs stored increments.
ROUNDS=${BENCH_ROUNDS:-5}
labels=(); pids_of=(); urls=(); keys=()
add_server() { labels+=("$1"); pids_of+=("$2"); urls+=("$3"); keys+=("$4"); }

# BENCH_BASELINE=path/to/another/hello adds that binary as one more row: an A/B of a change,
# e.g. the landed main built in a worktree.
builds=("glibc:target/release/hello" "static musl:target/x86_64-unknown-linux-musl/release/hello")
if [ -n "${BENCH_BASELINE:-}" ]; then builds+=("baseline:$BENCH_BASELINE"); fi
for build in "${builds[@]}"; do
  label=${build%%:*}
  port=$(free_port)
  key="hello.${label// /-}"
  HOST=127.0.0.1 PORT=$port REDIS_CLUSTER_ADDRESS=127.0.0.1:$redis_port REDIS_KEY=$key RUST_LOG=warn \
    "${build#*:}" 2>>"$work/hello.log" &
  pids+=($!)
  wait_port "$port"
  case $label in "static musl") static_i=${#labels[@]} ;; baseline) baseline_i=${#labels[@]} ;; esac
  add_server "hello ($label)" "$!" "http://127.0.0.1:$port/hello/bench" "$key"
done
webdis_port=$(free_port)
cat >"$work/webdis.json" <<JSON
{"redis_host": "127.0.0.1", "redis_port": $redis_port, "http_host": "127.0.0.1",
 "http_port": $webdis_port, "threads": 2, "pool_size": 20, "daemonize": false,
 "database": 0, "verbosity": 0, "logfile": "$work/webdis.log"}
JSON
webdis "$work/webdis.json" 2>/dev/null &
pids+=($!)
wait_port "$webdis_port"
webdis_i=${#labels[@]}
add_server "webdis" "$!" "http://127.0.0.1:$webdis_port/ZINCRBY/webdis.names/1/bench" webdis.names

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
daemon off; pid $work/nginx/pid; error_log $work/nginx/error.log warn; worker_processes 2;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $work/nginx;
  server { listen 127.0.0.1:$nginx_port; location / { default_type text/plain; return 200 'Hello, "bench"'; } } }
NGINX
nginx -c "$work/nginx/nginx.conf" >/dev/null 2>&1 &
pids+=($!)
wait_port "$nginx_port"
nginx_i=${#labels[@]}
add_server "nginx constant" "$!" "http://127.0.0.1:$nginx_port/hello/bench" ""

echo
echo "== /hello/{name}: wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS alternating rounds, one private redis-server =="
for round in $(seq "$ROUNDS"); do
  for i in "${!labels[@]}"; do
    c0=$(cpu_ticks "${pids_of[$i]}" "$redis_pid"); s0=$(cpu_ticks "${pids_of[$i]}"); x0=$(switches "${pids_of[$i]}")
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${urls[$i]}" >"$work/wrk-$i-$round.txt" 2>&1 || true
    echo $(($(cpu_ticks "${pids_of[$i]}" "$redis_pid") - c0)) >"$work/cpu-$i-$round"
    echo $(($(cpu_ticks "${pids_of[$i]}") - s0)) >"$work/srv-$i-$round"
    echo $(($(switches "${pids_of[$i]}") - x0)) >"$work/cs-$i-$round"
  done
done
sleep 0.5
printf '%-20s %10s %9s %9s %9s %10s %10s %8s %9s %9s %7s\n' server "req/s" p50 p99 "peak RSS" answered stored non-2xx "CPU/req" "srv CPU" "cs/req"
for i in "${!labels[@]}"; do
  # The median round by requests/s.
  median=$(for r in $(seq "$ROUNDS"); do echo "$(awk '/^Requests\/sec/ {print $2}' "$work/wrk-$i-$r.txt") $r"; done | sort -n | awk -v m=$(((ROUNDS + 1) / 2)) 'NR==m {print $2}')
  f="$work/wrk-$i-$median.txt"
  answered=0; non2xx=0
  for r in $(seq "$ROUNDS"); do
    answered=$((answered + $(awk '/requests in/ {print $1}' "$work/wrk-$i-$r.txt")))
    n=$(awk '/Non-2xx/ {print $5}' "$work/wrk-$i-$r.txt"); non2xx=$((non2xx + ${n:-0}))
  done
  stored=$([ -n "${keys[$i]}" ] && rcli ZSCORE "${keys[$i]}" bench || echo "-")
  requests=$(awk '/requests in/ {print $1}' "$f")
  printf '%-20s %10s %9s %9s %8sMB %10s %10s %8s %7sus %7sus %7s\n' "${labels[$i]}" \
    "$(awk '/^Requests\/sec/ {print $2}' "$f")" "$(awk '$1=="50%" {print $2}' "$f")" \
    "$(awk '$1=="99%" {print $2}' "$f")" "$(($(hwm_kb "${pids_of[$i]}") / 1024))" \
    "$answered" "${stored:-0}" "$non2xx" "$(python3 -c "print(f'{$(cat "$work/cpu-$i-$median") * $tick_us / $requests:.1f}')")" \
    "$(python3 -c "print(f'{$(cat "$work/srv-$i-$median") * $tick_us / $requests:.1f}')")" \
    "$(python3 -c "print(f'{$(cat "$work/cs-$i-$median") / $requests:.3f}')")"
  awk '/^Requests\/sec/ {print $2}' "$f" >"$work/rps-$i"
done
echo "(stored may exceed answered by up to $CONNECTIONS a round: requests in flight when wrk stops; it must never be lower)"
echo "(CPU/req: CPU time of the server and redis-server together per answered request, median round;"
echo " srv CPU: the server's alone; cs/req: the server's context switches per request, all threads;"
echo " wrk shares the machine's cores, so the less a server spends per request, the more wrk can send)"
ratio() { python3 -c "print(f'{$(cat "$work/rps-$1")/$(cat "$work/rps-$2"):.2f}x')"; }
echo "median throughput, static hello / webdis: $(ratio "$static_i" "$webdis_i")"
echo "median throughput, static hello / nginx constant: $(ratio "$static_i" "$nginx_i")"
if [ -n "${baseline_i:-}" ]; then
  echo "median throughput, static hello / baseline: $(ratio "$static_i" "$baseline_i")"
fi
for p in "${pids_of[@]}"; do kill -QUIT "$p" 2>/dev/null || true; done
echo "redis-benchmark ZINCRBY -c $CONNECTIONS (the store's ceiling, one per round trip, then pipelined 16):"
redis-benchmark -p "$redis_port" -c "$CONNECTIONS" -n 300000 -q ZINCRBY bench.ceiling 1 bench 2>/dev/null | tr '\r' '\n' | tail -1
redis-benchmark -p "$redis_port" -c "$CONNECTIONS" -n 1000000 -P 16 -q ZINCRBY bench.ceiling 1 bench 2>/dev/null | tr '\r' '\n' | tail -1

echo
echo "== start-up and idle (static musl build) =="
port=$(free_port)
start=$(date +%s%N)
HOST=127.0.0.1 PORT=$port REDIS_CLUSTER_ADDRESS=127.0.0.1:$redis_port RUST_LOG=warn \
  target/x86_64-unknown-linux-musl/release/hello 2>/dev/null &
pid=$!; pids+=($pid)
until curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" 2>/dev/null | grep -q 200; do sleep 0.001; done
end=$(date +%s%N)
sleep 2
echo "exec to first 200: $(( (end - start) / 1000000 )) ms; idle RSS: $(( $(rss_kb "$pid") / 1024 )) MB ($(rss_kb "$pid") kB)"
echo "static binary: $(stat -c %s target/x86_64-unknown-linux-musl/release/hello) bytes"
kill "$pid"

echo
echo "== /counts (static musl build) vs redis-cli ZRANGE 0 -1 WITHSCORES, same set =="
printf '%-10s %12s %12s %8s %14s %14s\n' names hello redis-cli ratio "RSS before" "RSS peak"
loaded=0
for n in 10000 100000 $NAMES; do
  python3 - "$loaded" "$n" <<'PY' | rcli --pipe >/dev/null
import sys
start, n = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout
for first in range(start, n, 1000):
    args = ["ZADD", "nytimes.names"]
    for i in range(first, min(first + 1000, n)):
        args += [str(i % 97 + 1), f"name-{i:07d}"]
    out.write(f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args))
PY
  loaded=$n
  port=$(free_port)
  HOST=127.0.0.1 PORT=$port REDIS_CLUSTER_ADDRESS=127.0.0.1:$redis_port RUST_LOG=warn \
    target/x86_64-unknown-linux-musl/release/hello 2>/dev/null &
  pid=$!; pids+=($pid)
  wait_port "$port"
  sleep 1.5
  before=$(rss_kb "$pid")
  t0=$(date +%s%N); curl -s -o /dev/null "http://127.0.0.1:$port/counts"; t1=$(date +%s%N)
  peak=$(hwm_kb "$pid")
  r0=$(date +%s%N); rcli ZRANGE nytimes.names 0 -1 WITHSCORES >/dev/null; r1=$(date +%s%N)
  printf '%-10s %10.3fs %10.3fs %7.2fx %12s kB %12s kB\n' "$(rcli ZCARD nytimes.names)" \
    "$(python3 -c "print(($t1-$t0)/1e9)")" "$(python3 -c "print(($r1-$r0)/1e9)")" \
    "$(python3 -c "print(($t1-$t0)/($r1-$r0))")" "$before" "$peak"
  kill "$pid"
done

# Past one Redis (issue 27): what a greeting costs Redis when it must reach a replica first
# (REDIS_WAIT_REPLICAS), when names are spread over a cluster, and when hot names repeat within
# a batch. The same wrk load as above, against the static build; CPU is Redis's per greeting.
static=target/x86_64-unknown-linux-musl/release/hello
calls() { redis-cli -p "$1" INFO commandstats | tr -d '\r' | awk -F'[=,]' '/^cmdstat_zincrby:/ {print $2}'; }
calls0() { local c; c=$(calls "$1"); echo "${c:-0}"; }
per_greeting_us() { python3 -c "print(f'{$1 * $tick_us / max($2, 1):.1f}')"; }
# Runs wrk against $1 (a URL) with the rest as wrk's extra arguments; prints req/s p50 p99 requests.
wrk_row() {
  local url=$1; shift
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" >"$work/wrk-extra.txt" 2>&1 || true
  echo "$(awk '/^Requests\/sec/ {print $2}' "$work/wrk-extra.txt") $(awk '$1=="50%" {print $2}' "$work/wrk-extra.txt") $(awk '$1=="99%" {print $2}' "$work/wrk-extra.txt") $(awk '/requests in/ {print $1}' "$work/wrk-extra.txt")"
}
start_hello() { # port, then NAME=value settings; sets hello_pid
  local port=$1; shift
  env HOST=127.0.0.1 PORT="$port" RUST_LOG=warn "$@" "$static" 2>>"$work/hello.log" &
  hello_pid=$!
  pids+=($!)
  wait_port "$port"
}

echo
echo "== REDIS_WAIT_REPLICAS on a primary with one replica (static musl build) =="
primary_port=$(free_port); replica_port=$(free_port)
redis-server --port "$primary_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
primary_pid=$!; pids+=($!)
redis-server --port "$replica_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --replicaof 127.0.0.1 "$primary_port" --repl-diskless-sync-delay 0 >/dev/null &
pids+=($!)
wait_port "$primary_port"; wait_port "$replica_port"
until redis-cli -p "$primary_port" INFO replication | grep -q 'state=online'; do sleep 0.1; done
printf '%-22s %10s %9s %9s %16s\n' REDIS_WAIT_REPLICAS "req/s" p50 p99 "Redis CPU/req"
for wait in 0 1; do
  port=$(free_port)
  start_hello "$port" REDIS_CLUSTER_ADDRESS="127.0.0.1:$primary_port" REDIS_KEY="bench.wait$wait" REDIS_WAIT_REPLICAS="$wait"
  c0=$(cpu_ticks "$primary_pid")
  read -r rps p50 p99 requests < <(wrk_row "http://127.0.0.1:$port/hello/bench")
  printf '%-22s %10s %9s %9s %14sus\n' "$wait" "$rps" "$p50" "$p99" "$(per_greeting_us $(($(cpu_ticks "$primary_pid") - c0)) "$requests")"
  kill "$hello_pid"
done
echo "(a replica on loopback answers WAIT within microseconds; across zones, add that round trip to each batch)"

echo
echo "== the same /hello load on 1 and on 3 primaries (static musl build, distinct names) =="
# Each shard's Redis CPU per greeting it served. The shards share this machine's cores with the
# service and wrk: a shard with a core of its own serves 1e6 / (its CPU per greeting) a second.
cat >"$work/distinct.lua" <<'LUA'
-- Every greeting a name of its own: wrk's threads are told apart by setup().
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/hello/d" .. id .. "-" .. n)
end
LUA
printf '%-14s %10s %9s %9s  %s\n' primaries "req/s" p50 p99 "Redis CPU per greeting, by shard"
for shards in 1 3; do
  ports=(); cluster_pids=()
  for _ in $(seq "$shards"); do
    p=$(free_port); bus=$(free_port)
    mkdir -p "$work/cluster-$p"
    redis-server --port "$p" --cluster-port "$bus" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$work/cluster-$p" --cluster-enabled yes --cluster-config-file nodes.conf >/dev/null &
    pids+=($!); cluster_pids+=($!); ports+=("$p")
  done
  for p in "${ports[@]}"; do wait_port "$p"; done
  if [ "$shards" = 1 ]; then
    redis-cli -p "${ports[0]}" CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
  else
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 0 --cluster-yes >/dev/null
  fi
  until redis-cli -p "${ports[0]}" CLUSTER INFO | grep -q 'cluster_state:ok'; do sleep 0.1; done
  port=$(free_port)
  start_hello "$port" REDIS_CLUSTER_ADDRESS="127.0.0.1:${ports[0]}"
  before=(); for i in "${!ports[@]}"; do before+=("$(cpu_ticks "${cluster_pids[$i]}") $(calls0 "${ports[$i]}")"); done
  read -r rps p50 p99 _ < <(wrk_row "http://127.0.0.1:$port/" -s "$work/distinct.lua")
  by_shard=""
  for i in "${!ports[@]}"; do
    read -r cpu0 calls_before <<<"${before[$i]}"
    served=$(($(calls0 "${ports[$i]}") - calls_before))
    by_shard+="$(per_greeting_us $(($(cpu_ticks "${cluster_pids[$i]}") - cpu0)) "$served")us ($served) "
  done
  printf '%-14s %10s %9s %9s  %s\n' "$shards" "$rps" "$p50" "$p99" "$by_shard"
  kill "$hello_pid"; for p in "${cluster_pids[@]}"; do kill "$p"; done
done

echo
echo "== hot names: one ZINCRBY by k for a name greeted k times in a batch (static musl build) =="
cat >"$work/zipf.lua" <<'LUA'
-- Names drawn from a Zipf law (exponent 1) over 10,000 names, each thread its own draws.
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
function init(args) math.randomseed(id * 7919) end
local names, cdf, total = 10000, {}, 0
for rank = 1, names do total = total + 1 / rank end
local sum = 0
for rank = 1, names do sum = sum + 1 / rank / total; cdf[rank] = sum end
request = function()
  local u, lo, hi = math.random(), 1, names
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/hello/z" .. lo)
end
LUA
printf '%-12s %-12s %10s %18s %16s\n' build names "req/s" "ZINCRBY/greeting" "Redis CPU/req"
hot_builds=("static:$static")
if [ -n "${BENCH_BASELINE:-}" ]; then hot_builds+=("baseline:$BENCH_BASELINE"); fi
for build in "${hot_builds[@]}"; do
  port=$(free_port)
  HOST=127.0.0.1 PORT=$port REDIS_CLUSTER_ADDRESS=127.0.0.1:$redis_port REDIS_KEY="bench.hot.${build%%:*}" RUST_LOG=warn \
    "${build#*:}" 2>>"$work/hello.log" &
  pid=$!; pids+=($pid)
  wait_port "$port"
  for load in distinct zipf one; do
    case $load in
      distinct) args=(-s "$work/distinct.lua"); url="http://127.0.0.1:$port/" ;;
      zipf) args=(-s "$work/zipf.lua"); url="http://127.0.0.1:$port/" ;;
      one) args=(); url="http://127.0.0.1:$port/hello/everyone" ;;
    esac
    c0=$(cpu_ticks "$redis_pid"); z0=$(calls0 "$redis_port")
    read -r rps _ _ requests < <(wrk_row "$url" "${args[@]}")
    printf '%-12s %-12s %10s %18s %14sus\n' "${build%%:*}" "$load" "$rps" \
      "$(python3 -c "print(f'{($(calls0 "$redis_port") - $z0) / max($requests, 1):.3f}')")" \
      "$(per_greeting_us $(($(cpu_ticks "$redis_pid") - c0)) "$requests")"
  done
  kill "$pid"
done
echo "(a connection has one greeting at the store at a time, so a batch holds at most one greeting a connection: -c$CONNECTIONS)"
