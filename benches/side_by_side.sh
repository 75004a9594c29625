#!/usr/bin/env bash
# graygate side by side with nginx, HAProxy and a layer-4 floor, in one run, interleaved.
#
# Every contestant is a proxy on loopback in front of the same two upstreams (one Debian nginx
# worker answering "v1" on one port and "v2" on another), with the same routing: 90/10 between
# v1 and v2, and `X-Canary: v2` forces v2. Contestants (CONTESTANTS, in this order per round):
#   floor     HAProxy `mode tcp` relaying bytes to v1: no HTTP work, no split. Not a peer: the
#             socket work any proxy does per request here, the limit an HTTP proxy can approach
#   haproxy   HAProxy HTTP mode, balance roundrobin weights 90/10 + acl on X-Canary, http-reuse always
#   nginx     split_clients 90/10 + map $http_x_canary, upstream keepalive
#   graygate  $GRAYGATE_BIN, alias "canary" of function "bench" (trigger /bench-canary)
#   nginx-log, graygate-log   the same two with their access log on (a JSON line per request to
#             a file: nginx `access_log ... buffer=64k flush=1s`, graygate `access_log: {format:
#             json}`); not in the default list: CONTESTANTS="nginx nginx-log graygate graygate-log"
#             measures what each one's log costs per request, paired per round
# All proxies get one worker (nginx worker_processes 1, haproxy nbthread 1, graygate one tokio
# worker). Phases:
#   1 gate    10,000 plain requests on one connection (the v2 count is reported: 1,000 expected),
#             1,000 with X-Canary: v2 on another (all must be v2), no non-2xx; a failure stops the run
#   2 warm-up WARMUP s per contestant, not recorded
#   3 tput    ROUNDS rounds, contestants interleaved; wrk -c CONNS -t THREADS -d DURATION --latency,
#             every 10th request with X-Canary: v2; proxy CPU µs/request from /proc/PID/stat
#   4 count   (COUNT=1) COUNT_REQUESTS requests per contestant under `strace -c -f` (syscalls per
#             request) and under `perf stat` (instructions per request, or task-clock if the VM has
#             no hardware counters)
# Knobs (env): DURATION=10 CONNS=64 THREADS=1 ROUNDS=5 WARMUP=2 SETTLE=1 PIN=proxy0|none NICE=0
#   CONTESTANTS="floor haproxy nginx graygate" COUNT=0 COUNT_REQUESTS=200000 GATE_N=10000
#   GATE_HDR_N=1000 GRAYGATE_BIN=target/release/graygate OUT=<results dir, default a mktemp dir>
# Output: a Markdown summary on stdout and in $OUT/summary.md (benches/side_by_side.py $OUT
# re-makes it); raw.csv (one row per measured run), gate.csv, count.csv, meta.txt, raw/ (untouched
# wrk/strace/perf output), run/ (configs and server logs).
# Usage: cargo build --release && PIN=proxy0 NICE=-10 ROUNDS=7 benches/side_by_side.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-2}
SETTLE=${SETTLE:-1}                 # seconds of pause before each measured run
PIN=${PIN:-proxy0}
NICE=${NICE:-0}
CONTESTANTS=${CONTESTANTS:-floor haproxy nginx graygate}
COUNT=${COUNT:-0}
COUNT_REQUESTS=${COUNT_REQUESTS:-200000}
COUNT_MAX_S=${COUNT_MAX_S:-300}     # upper bound of one counted wrk run (strace slows the proxy)
GATE_N=${GATE_N:-10000}
GATE_HDR_N=${GATE_HDR_N:-1000}
GATE_MAX_S=${GATE_MAX_S:-60}
GRAYGATE_BIN=${GRAYGATE_BIN:-target/release/graygate}

die() { echo "side_by_side.sh: $*" >&2; exit 2; }

# ---------------------------------------------------------------- preconditions
missing=()
need() { command -v "$1" >/dev/null || missing+=("$1 (Debian package $2)"); }
need nginx nginx-light; need haproxy haproxy; need wrk wrk; need curl curl; need python3 python3
need taskset util-linux; need timeout coreutils; need pgrep procps
if [ "$COUNT" = 1 ]; then need strace strace; need perf linux-perf; fi
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]}
  install with: apt-get install -y wrk nginx-light haproxy strace linux-perf"
for name in $CONTESTANTS; do
  case $name in floor|haproxy|nginx|graygate|nginx-log|graygate-log) ;;
    *) die "unknown contestant '$name' (floor haproxy nginx graygate nginx-log graygate-log)" ;; esac
done
case " $CONTESTANTS " in *" graygate "*|*" graygate-log "*)
  [ -x "$GRAYGATE_BIN" ] || die "no graygate binary at $GRAYGATE_BIN (cargo build --release, or set GRAYGATE_BIN)" ;;
esac
case $PIN in
  proxy0) [ "$(nproc)" -ge 2 ] || die "PIN=proxy0 needs two CPUs (use PIN=none)"
          PROXY_CPU=0; CLIENT_CPU=1 ;;  # the proxy alone on cpu0; wrk, upstreams, tracers on cpu1
  none)   PROXY_CPU=; CLIENT_CPU= ;;
  *) die "PIN=$PIN: proxy0 or none" ;;
esac
[ "$CONNS" -ge "$THREADS" ] || die "CONNS ($CONNS) must be at least THREADS ($THREADS)"

OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/graygate-side-by-side.XXXXXX")}
RUN=$OUT/run; RAW=$OUT/raw
mkdir -p "$RUN" "$RAW"
HZ=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec 3>&2   # the harness's own stderr, for log lines even while a command's stderr is redirected
log() { printf '[%s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/harness.log" >&3; }
log "results in $OUT"

# ---------------------------------------------------------------- processes
# LIVE: pid -> what, for everything started in the background and not yet reaped. The EXIT trap
# stops those and their direct children (nginx workers) by PID: TERM, then KILL after 5 s.
declare -A LIVE=()
cleanup() {
  set +e
  trap - EXIT
  local all=() p
  for p in "${!LIVE[@]}"; do all+=("$p" $(pgrep -P "$p")); done
  if [ ${#all[@]} -gt 0 ]; then
    kill -TERM "${all[@]}" 2>/dev/null
    for _ in $(seq 50); do kill -0 "${all[@]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${all[@]}" 2>/dev/null
  fi
  wait 2>/dev/null
  log "stopped: ${all[*]:-nothing}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# prefix CPU: PRE = the nice/taskset command prefix for a process on that CPU ("" = anywhere)
prefix() { PRE=(); [ "$NICE" != 0 ] && PRE=(nice -n "$NICE"); [ -n "$1" ] && PRE+=(taskset -c "$1"); return 0; }
prefix "$CLIENT_CPU"; CLIENT=("${PRE[@]}")   # wrk, strace, perf

# spawn NAME CPU CMD...: a foreground server in the background (nice/taskset exec into it, so
# $! is the server itself); MAIN[NAME] = its pid.
declare -A MAIN=() PORT=()
spawn() {
  local name=$1; prefix "$2"; shift 2
  "${PRE[@]}" "$@" >>"$RUN/$name.log" 2>&1 &
  MAIN[$name]=$!; LIVE[$!]=$name
  log "started $name (pid $!, cpu ${PRE[*]:+${PRE[*]}}): $*"
}
# group_pids NAME: the server and its children (nginx master + worker)
group_pids() { local p=${MAIN[$1]}; echo "$p $(pgrep -P "$p" | tr '\n' ' ' || true)"; }
# ticks PID...: utime+stime in clock ticks, summed (a process's line covers all its threads)
ticks() {
  local t=0 p
  for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done
  echo "$t"
}
# cpustat: "busy total" clock ticks over all CPUs (busy = user nice system irq softirq; no steal)
cpustat() { awk '/^cpu /{b = $2 + $3 + $4 + $7 + $8; print b, b + $5 + $6}' /proc/stat; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
first_line() { "$@" 2>&1 | sed -n 1p || true; }

# ---------------------------------------------------------------- configs
# nginx_head DIR: one worker, foreground, no access log, keep-alive lifted, every file nginx
# writes (pid, error log, temp paths) under DIR; the caller adds servers and closes `http`.
nginx_head() {
  cat <<EOF
worker_processes 1; daemon off; master_process on; pid $1/nginx.pid; error_log $1/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http { access_log off; default_type text/plain; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path $1/b; proxy_temp_path $1/p; fastcgi_temp_path $1/f; uwsgi_temp_path $1/u; scgi_temp_path $1/s;
EOF
}
# start_nginx NAME CPU CONF: test the config, then run it (-e: the startup log in DIR too)
start_nginx() {
  local dir; dir=$(dirname "$3")
  nginx -t -q -p "$dir/" -e "$dir/error.log" -c "$3" || die "$1: nginx -t failed on $3"
  spawn "$1" "$2" nginx -p "$dir/" -e "$dir/error.log" -c "$3"
}

UP1=$(free_port); UP2=$(free_port)
mkdir -p "$RUN/upstream"
{ nginx_head "$RUN/upstream"; cat <<EOF
  server { listen 127.0.0.1:$UP1 backlog=4096; location / { return 200 "v1"; } }
  server { listen 127.0.0.1:$UP2 backlog=4096; location / { return 200 "v2"; } } }
EOF
} >"$RUN/upstream/nginx.conf"

start_floor() {
  cat >"$RUN/floor.cfg" <<EOF
# Layer 4: bytes relayed to v1, one upstream connection per client connection, no HTTP parsing.
global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe_floor
    bind 127.0.0.1:${PORT[floor]}
    default_backend be_v1
backend be_v1
    server v1 127.0.0.1:$UP1
EOF
  haproxy -q -c -f "$RUN/floor.cfg" || die "floor: haproxy -c failed"
  spawn floor "$PROXY_CPU" haproxy -db -f "$RUN/floor.cfg"
}

start_haproxy() {
  cat >"$RUN/haproxy.cfg" <<EOF
# HTTP mode, no logging: X-Canary: v2 -> v2, otherwise smooth weighted round robin 90/10.
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always
frontend fe_canary
    bind 127.0.0.1:${PORT[haproxy]}
    acl canary_v2 req.hdr(x-canary) -m str v2
    use_backend be_v2 if canary_v2
    default_backend be_split
backend be_split
    balance roundrobin
    server v1 127.0.0.1:$UP1 weight 90
    server v2 127.0.0.1:$UP2 weight 10
backend be_v2
    server v2 127.0.0.1:$UP2
EOF
  haproxy -q -c -f "$RUN/haproxy.cfg" || die "haproxy: haproxy -c failed"
  spawn haproxy "$PROXY_CPU" haproxy -db -f "$RUN/haproxy.cfg"
}

# start_nginx_proxy NAME [LOG]: the split; with LOG, a JSON access log line per request, buffered
# as a busy nginx is configured (64 KiB, flushed at least every second).
start_nginx_proxy() {
  local name=$1 logged=${2:-} log_format="" log_on=""
  mkdir -p "$RUN/$name"
  if [ -n "$logged" ]; then
    log_format="log_format gj escape=json '{\"time\":\"\$time_iso8601\",\"request_id\":\"\$request_id\",\"client\":\"\$remote_addr:\$remote_port\",\"method\":\"\$request_method\",\"path\":\"\$uri\",\"protocol\":\"\$server_protocol\",\"status\":\$status,\"bytes_in\":\$request_length,\"bytes_out\":\$bytes_sent,\"duration\":\$request_time,\"upstream_time\":\"\$upstream_response_time\",\"pool\":\"\$pool\",\"upstream\":\"\$upstream_addr\"}';"
    # In the server block: nginx_head's http-level \`access_log off\` would cancel it there.
    log_on="access_log $RUN/$name/access.log gj buffer=64k flush=1s;"
  fi
  { nginx_head "$RUN/$name"; cat <<EOF
  upstream v1 { server 127.0.0.1:$UP1; keepalive 256; keepalive_requests 100000000; keepalive_timeout 300s; }
  upstream v2 { server 127.0.0.1:$UP2; keepalive 256; keepalive_requests 100000000; keepalive_timeout 300s; }
  # per request: MurmurHash2 of the random \$request_id picks the pool; the header wins over it
  split_clients "\${request_id}" \$split_pool { 90% v1; * v2; }
  map \$http_x_canary \$pool { default \$split_pool; v2 v2; }
  $log_format
  server { listen 127.0.0.1:${PORT[$name]} backlog=4096; $log_on
    location / { proxy_pass http://\$pool; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
  } >"$RUN/$name/nginx.conf"
  start_nginx "$name" "$PROXY_CPU" "$RUN/$name/nginx.conf"
}

GRAYGATE_THREADS="TOKIO_WORKER_THREADS=1"
# start_graygate NAME [LOG]: the alias; with LOG, its JSON access log to a file.
start_graygate() {
  local name=$1 logged=${2:-}
  mkdir -p "$RUN/$name"
  cat >"$RUN/$name/routes.yaml" <<EOF
project_id: 0123456789abcdef0123456789abcdef
region: local
functions:
  - name: bench
    upstream: "http://127.0.0.1:$UP1"
    versions:
      - { version: v1, upstream: "http://127.0.0.1:$UP1" }
      - { version: v2, upstream: "http://127.0.0.1:$UP2" }
    aliases:
      - name: canary
        version: v1
        additional_version_weights: { v2: 10 }
        additional_version_strategy:
          v2: { combine_type: and, rules: [ { rule_type: Header, param: x-canary, op: "=", value: v2 } ] }
    triggers:
      - { target: canary }           # path /bench-canary
EOF
  # The routes file is not rewritten during the run, so its fallback poll is pushed out of the way.
  local base="\"listen\": \"127.0.0.1:${PORT[$name]}\", \"admin_listen\": \"127.0.0.1:${ADMIN[$name]}\",
 \"routes\": \"routes.yaml\", \"reload\": {\"poll_ms\": 3600000}"
  [ -n "$logged" ] && base="$base, \"access_log\": {\"path\": \"access.log\", \"format\": \"json\"}"
  # One worker: TOKIO_WORKER_THREADS=1 makes graygate run a current-thread runtime.
  echo "{$base}" >"$RUN/$name/graygate.yaml"
  "$GRAYGATE_BIN" check --config "$RUN/$name/graygate.yaml" >"$RUN/$name/check.log" 2>&1 \
    || die "graygate check failed: $(cat "$RUN/$name/check.log")"
  spawn "$name" "$PROXY_CPU" env TOKIO_WORKER_THREADS=1 "$GRAYGATE_BIN" serve --config "$RUN/$name/graygate.yaml"
  wait_http "http://127.0.0.1:${ADMIN[$name]}/readyz" || die "$name not ready (see $RUN/$name.log)"
}

# ---------------------------------------------------------------- wrk scripts
# The request mix of warm-up, tput and count: every 10th request carries X-Canary: v2, the rest
# are left to the 90/10 split; the same bytes for every contestant (all answer /bench-canary).
# With STOP_N > 0 (count), each thread stops after STOP_N responses and creates MARK.<thread>.
cat >"$RUN/mix.lua" <<'EOF'
local stop_n = tonumber(os.getenv("STOP_N") or "0")
local mark = os.getenv("MARK") or ""
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
local plain, canary, sent, seen
function init(args)
  plain = wrk.format("GET", wrk.path, { ["Host"] = wrk.host })
  canary = wrk.format("GET", wrk.path, { ["Host"] = wrk.host, ["X-Canary"] = "v2" })
  sent, seen = 0, 0
end
function request()
  sent = sent + 1
  if sent % 10 == 0 then return canary end
  return plain
end
if stop_n > 0 then -- only then: a response() callback costs wrk time
  function response(status, headers, body)
    seen = seen + 1
    if seen == stop_n then
      local f = io.open(mark .. "." .. id, "w"); if f then f:close() end
      wrk.thread:stop()
    end
  end
end
EOF
# The gate: thread 1 sends GATE_N plain requests, thread 2 GATE_HDR_N with X-Canary: v2, one
# connection each; bodies are counted (other = not a 200 with body v1 or v2).
cat >"$RUN/gate.lua" <<'EOF'
local mark = os.getenv("MARK") or ""
local list = {}
function setup(thread) table.insert(list, thread); thread:set("id", #list) end
local req, limit
function init(args)
  counts = { v1 = 0, v2 = 0, other = 0 }  -- globals: done() reads them through thread:get
  total = 0
  if id == 2 then
    req, limit = wrk.format("GET", wrk.path, { ["Host"] = wrk.host, ["X-Canary"] = "v2" }), tonumber(os.getenv("GATE_HDR_N"))
  else
    req, limit = wrk.format("GET", wrk.path, { ["Host"] = wrk.host }), tonumber(os.getenv("GATE_N"))
  end
end
function request() return req end
function response(status, headers, body)
  if total >= limit then return end
  local key = (status == 200 and (body == "v1" or body == "v2")) and body or "other"
  counts[key] = counts[key] + 1
  total = total + 1
  if total == limit then
    local f = io.open(mark .. "." .. id, "w"); if f then f:close() end
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  for i, t in ipairs(list) do
    local c = t:get("counts")
    io.write(string.format("GATE %s v1=%d v2=%d other=%d\n", i == 2 and "header" or "plain", c.v1, c.v2, c.other))
  end
end
EOF

# wrk_counted FILE MAX_S THREADS WRK-ARGS...: wrk (-d MAX_S) in the background until each of
# its THREADS threads has created $MARK.<n>, then SIGINT, which cuts wrk's -d sleep short (timeout
# forwards it to wrk). wrk would otherwise sleep the whole -d after its threads stopped.
wrk_counted() {
  local f=$1 max=$2 threads=$3 mark="$RUN/mark"; shift 3
  rm -f "$mark".*
  MARK=$mark timeout -k 5 $((max + 20)) "${CLIENT[@]}" wrk -d"${max}s" "$@" >"$f" 2>&1 &
  local pid=$! n m; LIVE[$pid]=wrk
  while kill -0 "$pid" 2>/dev/null; do
    n=0; for m in "$mark".*; do [ -e "$m" ] && n=$((n + 1)); done
    [ "$n" -ge "$threads" ] && break
    sleep 0.05
  done
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" || true
  unset "LIVE[$pid]"
}
# parse_wrk FILE -> "requests rps p50_us p99_us non2xx socket_errors"
parse_wrk() {
  awk 'function us(v,  n) { n = v + 0; if (v ~ /us$/) return n; if (v ~ /ms$/) return n * 1e3; if (v ~ /m$/) return n * 6e7; if (v ~ /s$/) return n * 1e6; return n }
       / requests in / { req = $1 } /^Requests\/sec:/ { rps = $2 }
       /^ +50%/ { p50 = us($2) } /^ +99%/ { p99 = us($2) }
       /Non-2xx or 3xx responses:/ { non2xx = $NF }
       /Socket errors:/ { gsub(",", ""); sock = $4 + $6 + $8 + $10 }
       END { printf "%d %.2f %.1f %.1f %d %d\n", req, rps, p50, p99, non2xx, sock }' "$1"
}

# ---------------------------------------------------------------- start everything
declare -A ADMIN=()
for name in $CONTESTANTS; do PORT[$name]=$(free_port); ADMIN[$name]=$(free_port); done
start_nginx upstream "$CLIENT_CPU" "$RUN/upstream/nginx.conf"
wait_http "http://127.0.0.1:$UP1/" && wait_http "http://127.0.0.1:$UP2/" || die "upstreams not up (see $RUN/upstream/error.log)"
declare -A URL=()
for name in $CONTESTANTS; do
  case $name in
    floor) start_floor ;; haproxy) start_haproxy ;;
    nginx) start_nginx_proxy nginx ;; nginx-log) start_nginx_proxy nginx-log logged ;;
    graygate) start_graygate graygate ;; graygate-log) start_graygate graygate-log logged ;;
  esac
  URL[$name]="http://127.0.0.1:${PORT[$name]}/bench-canary"
  wait_http "${URL[$name]}" || die "$name does not answer on ${URL[$name]} (see $RUN/$name.log)"
done

PERF_EVENT=instructions
if [ "$COUNT" = 1 ]; then
  case $(perf stat -x, -e instructions true 2>&1 >/dev/null | awk -F, '/instructions/ {print $1; exit}') in
    ''|'<'*) PERF_EVENT=task-clock; log "perf: no hardware counters here (instructions <not supported>), using task-clock" ;;
  esac
fi

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), Linux $(uname -r)"
  echo "nginx: $(first_line nginx -v)"
  echo "haproxy: $(first_line haproxy -v)"
  echo "wrk: $(first_line wrk -v)"
  case " $CONTESTANTS " in *" graygate "*|*" graygate-log "*)
    echo "graygate: $(first_line "$GRAYGATE_BIN" --version) ($GRAYGATE_BIN, $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ', src modified'))"
    echo "graygate worker: $GRAYGATE_THREADS" ;;
  esac
  if [ "$PIN" = proxy0 ]; then echo "pinning: proxy on cpu0; wrk, upstream nginx and tracers on cpu1 (taskset)"
  else echo "pinning: none"; fi
  echo "parameters: DURATION=$DURATION CONNS=$CONNS THREADS=$THREADS ROUNDS=$ROUNDS WARMUP=$WARMUP SETTLE=$SETTLE PIN=$PIN NICE=$NICE COUNT=$COUNT COUNT_REQUESTS=$COUNT_REQUESTS GATE_N=$GATE_N GATE_HDR_N=$GATE_HDR_N"
  echo "contestants: $CONTESTANTS"
  echo "clock ticks: $HZ per second"
  [ "$COUNT" = 1 ] && echo "perf event: $PERF_EVENT"
} >"$OUT/meta.txt"

# ---------------------------------------------------------------- 1. functional gate
echo "name,n,v1,v2,other,hdr_n,hdr_v1,hdr_v2,hdr_other,socket_errors,verdict" >"$OUT/gate.csv"
failed=0
for name in $CONTESTANTS; do
  f="$RAW/gate-$name.txt"
  GATE_N=$GATE_N GATE_HDR_N=$GATE_HDR_N wrk_counted "$f" "$GATE_MAX_S" 2 -t2 -c2 -s "$RUN/gate.lua" "${URL[$name]}"
  v1=0 v2=0 other=0 hv1=0 hv2=0 hother=0
  read -r v1 v2 other < <(awk '/^GATE plain/ {gsub(/[a-z0-9]+=/, ""); print $3, $4, $5}' "$f") || true
  read -r hv1 hv2 hother < <(awk '/^GATE header/ {gsub(/[a-z0-9]+=/, ""); print $3, $4, $5}' "$f") || true
  sock=$(parse_wrk "$f" | awk '{print $6}')
  verdict=ok
  if [ $((v1 + v2 + hv1 + hv2)) -eq 0 ]; then verdict="FAIL: no answers (see $f)"
  elif [ $((v1 + v2 + other)) -ne "$GATE_N" ] || [ $((hv1 + hv2 + hother)) -ne "$GATE_HDR_N" ]; then verdict="FAIL: incomplete"
  elif [ "$other" -ne 0 ] || [ "$hother" -ne 0 ]; then verdict="FAIL: non-2xx or unexpected bodies"
  elif [ "$sock" -ne 0 ]; then verdict="FAIL: socket errors"
  elif [ "$name" = floor ]; then [ "$v2" -eq 0 ] && [ "$hv2" -eq 0 ] || verdict="FAIL: floor answered v2"
  elif [ "$hv2" -ne "$GATE_HDR_N" ]; then verdict="FAIL: X-Canary: v2 not honoured"
  fi
  echo "$name,$GATE_N,$v1,$v2,$other,$GATE_HDR_N,$hv1,$hv2,$hother,$sock,$verdict" >>"$OUT/gate.csv"
  log "gate $name: v2 $v2 of $GATE_N; with X-Canary: v2, v2 $hv2 of $GATE_HDR_N; other $other+$hother; $verdict"
  [ "$verdict" = ok ] || failed=1
done
[ $failed = 0 ] || { column -s, -t "$OUT/gate.csv" >&2 2>/dev/null || cat "$OUT/gate.csv" >&2; die "functional gate failed: no measurement"; }

# ---------------------------------------------------------------- 2. warm-up
if [ "$WARMUP" -gt 0 ]; then
  for name in $CONTESTANTS; do
    timeout -k 5 $((WARMUP + 20)) "${CLIENT[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$RUN/mix.lua" "${URL[$name]}" \
      >"$RAW/warmup-$name.txt" 2>&1 || log "warm-up of $name: wrk exited non-zero"
  done
fi

# ---------------------------------------------------------------- 3. throughput
echo "round,name,requests,log_lines" >"$OUT/logs.csv"
echo "phase,round,name,conns,threads,duration,requests,rps,p50_us,p99_us,non2xx,socket_errors,hz,proxy_ticks,upstream_ticks,wrk_ticks,busy_ticks,total_ticks,proxy_cpu_us_per_req,other_cpu_pct" >"$OUT/raw.csv"
TIMEFORMAT='%3U %3S'   # bash `time`: user and system seconds of wrk
measure() { # ROUND NAME
  local round=$1 name=$2 f="$RAW/tput-r$1-$2.txt" pids ups s0 s1 p0 p1 u0 u1
  pids=$(group_pids "$name"); ups=$(group_pids upstream)
  # A logging contestant starts each run with an empty log (the file stays open, in append mode).
  [ -f "$RUN/$name/access.log" ] && : >"$RUN/$name/access.log"
  sleep "$SETTLE"
  read -r s0 < <(cpustat | tr ' ' ,); p0=$(ticks $pids); u0=$(ticks $ups)
  { time timeout -k 5 $((DURATION + 30)) "${CLIENT[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency \
      -s "$RUN/mix.lua" "${URL[$name]}" >"$f" 2>&1; } 2>"$f.time" || log "wrk against $name exited non-zero (see $f)"
  p1=$(ticks $pids); u1=$(ticks $ups); read -r s1 < <(cpustat | tr ' ' ,)
  local req rps p50 p99 non2xx sock
  read -r req rps p50 p99 non2xx sock < <(parse_wrk "$f")
  # A logging contestant must have logged: its lines after the flush (nginx: 1 s, graygate: 0.1 s).
  if [ -f "$RUN/$name/access.log" ]; then
    sleep 1.5
    echo "$round,$name,$req,$(wc -l <"$RUN/$name/access.log")" >>"$OUT/logs.csv"
  fi
  awk -v OFS=, -v ph=tput -v r="$round" -v n="$name" -v c="$CONNS" -v t="$THREADS" -v d="$DURATION" \
      -v req="$req" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v e="$non2xx" -v se="$sock" -v hz="$HZ" \
      -v px=$((p1 - p0)) -v up=$((u1 - u0)) -v s0="$s0" -v s1="$s1" '
    NF == 2 && $1 ~ /^[0-9.]+$/ { split(s0, a, ","); split(s1, b, ","); wrk = ($1 + $2) * hz; busy = b[1] - a[1]; total = b[2] - a[2]
      cpu = req > 0 ? px * 1e6 / hz / req : "nan"
      other = total > 0 ? 100 * (busy - px - up - wrk) / total : "nan"
      printf "%s,%d,%s,%d,%d,%d,%d,%s,%s,%s,%d,%d,%d,%d,%d,%.0f,%d,%d,%.3f,%.1f\n", ph, r, n, c, t, d, req, rps, p50, p99, e, se, hz, px, up, wrk, busy, total, cpu, other }' \
    "$f.time" >>"$OUT/raw.csv"
  log "tput round $round $name: $rps rps, $(tail -1 "$OUT/raw.csv" | cut -d, -f19) µs proxy CPU/request, non-2xx $non2xx, socket errors $sock"
}
for round in $(seq "$ROUNDS"); do
  for name in $CONTESTANTS; do measure "$round" "$name"; done
done

# ---------------------------------------------------------------- 4. counting
# count.csv: name,tool,requests,key,value: strace rows are syscall,calls ("total" included);
# perf rows are the event with its value (instructions, or task-clock in msec).
echo "name,tool,requests,key,value" >"$OUT/count.csv"
count_requests() { parse_wrk "$1" | awk '{print $1}'; }
if [ "$COUNT" = 1 ]; then
  per_thread=$(( (COUNT_REQUESTS + THREADS - 1) / THREADS ))
  for name in $CONTESTANTS; do
    pids=$(group_pids "$name")
    # strace -c -f on every process of the proxy (all threads), stopped (SIGINT) after wrk.
    args=(); for p in $pids; do args+=(-p "$p"); done
    "${CLIENT[@]}" strace -c -f -o "$RAW/count-strace-$name.txt" "${args[@]}" 2>"$RUN/strace-$name.err" &
    tracer=$!; LIVE[$tracer]=strace
    for _ in $(seq 100); do [ "$(grep -c attached "$RUN/strace-$name.err" || true)" -ge "$(wc -w <<<"$pids")" ] && break; sleep 0.05; done
    sleep 0.2
    STOP_N=$per_thread wrk_counted "$RAW/count-strace-$name.wrk.txt" "$COUNT_MAX_S" "$THREADS" -t"$THREADS" -c"$CONNS" -s "$RUN/mix.lua" "${URL[$name]}"
    kill -INT "$tracer"; wait "$tracer" || true; unset "LIVE[$tracer]"
    req=$(count_requests "$RAW/count-strace-$name.wrk.txt")
    awk -v n="$name" -v r="$req" '$1 ~ /^[0-9.]+$/ && NF >= 5 { print n ",strace," r "," $NF "," $4 }' \
      "$RAW/count-strace-$name.txt" >>"$OUT/count.csv"
    # perf stat on the same processes, a separate run (strace's stops would be in its count).
    "${CLIENT[@]}" perf stat -x, -e "$PERF_EVENT" -o "$RAW/count-perf-$name.txt" -p "$(tr -s ' ' ',' <<<"${pids% }")" \
      2>"$RUN/perf-$name.err" &
    tracer=$!; LIVE[$tracer]=perf
    sleep 0.5
    STOP_N=$per_thread wrk_counted "$RAW/count-perf-$name.wrk.txt" "$COUNT_MAX_S" "$THREADS" -t"$THREADS" -c"$CONNS" -s "$RUN/mix.lua" "${URL[$name]}"
    kill -INT "$tracer"; wait "$tracer" || true; unset "LIVE[$tracer]"
    req=$(count_requests "$RAW/count-perf-$name.wrk.txt")
    awk -F, -v n="$name" -v r="$req" '!/^#/ && NF >= 3 && $3 != "" { print n ",perf," r "," $3 "," $1 }' \
      "$RAW/count-perf-$name.txt" >>"$OUT/count.csv"
    log "count $name: strace and perf done ($req requests in the perf run)"
  done
fi

# ---------------------------------------------------------------- summary
python3 benches/side_by_side.py "$OUT" | tee "$OUT/summary.md"
log "results in $OUT (summary.md, raw.csv, gate.csv, count.csv, raw/)"
