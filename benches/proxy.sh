#!/usr/bin/env bash
# graygate-only measurements for the performance targets that the side-by-side harness
# (benches/side_by_side.sh) does not cover. Each pair is interleaved over ROUNDS rounds and
# compared by its median, in the same run:
#   scale    proxy CPU µs/request with a 100,000-trigger routes file vs a 3-trigger one
#   storm    wrk p99 at c=16: quiet vs a reload every 100 ms (the file alternates two splits)
#   memory   RSS with 10,000 functions loaded; RSS per idle keep-alive client connection
#   h2       HTTP/2 clients (h2load -c16 -m10): graygate vs nginx's http2, CPU µs/request
# Usage: benches/proxy.sh [scale|storm|memory|h2]...   Needs wrk, h2load and nginx (nginx-light) for the
# upstream; uses target/release/graygate (cargo build --release). Prints a Markdown summary.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GRAYGATE_BIN:-target/release/graygate}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_http() { for _ in $(seq 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# nginx_head DIR: the start of an nginx config (one worker, foreground, no access log, keep-alive
# lifted) whose pid, log and temp files live in DIR; the caller adds its servers and closes `http`.
nginx_head() {
  cat <<EOF
worker_processes 1; daemon off; pid $1/nginx.pid; error_log $1/error.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path $1/b; proxy_temp_path $1/p; fastcgi_temp_path $1/f; uwsgi_temp_path $1/u; scgi_temp_path $1/s;
EOF
}

UP1=$(free_port); UP2=$(free_port)
mkdir -p "$WORK/nginx"
{ nginx_head "$WORK/nginx"; cat <<EOF
  server { listen 127.0.0.1:$UP1; location / { return 200 "v1"; } }
  server { listen 127.0.0.1:$UP2; location / { return 200 "v2"; } } }
EOF
} >"$WORK/nginx/up.conf"
taskset -c 1 nginx -p "$WORK/nginx/" -c "$WORK/nginx/up.conf" & PIDS+=($!)
wait_http "http://127.0.0.1:$UP1/"

# routes FILE N WEIGHT: N functions fn0..fn(N-1) (JSON), each with a 90/10-style alias.
routes() {
  python3 - "$1" "$2" "$3" "$UP1" "$UP2" <<'PY'
import json, sys
path, n, weight, up1, up2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
functions = [{"name": f"fn{i}", "upstream": f"http://127.0.0.1:{up1}",
              "versions": [{"version": "v1", "upstream": f"http://127.0.0.1:{up1}"},
                           {"version": "v2", "upstream": f"http://127.0.0.1:{up2}"}],
              "aliases": [{"name": "canary", "version": "v1", "additional_version_weights": {"v2": weight},
                           "additional_version_strategy": {"v2": {"combine_type": "and", "rules": [
                               {"rule_type": "Header", "param": "x-canary", "op": "=", "value": "v2"}]}}}],
              "triggers": [{"target": "canary"}]} for i in range(n)]
json.dump({"project_id": "p", "region": "local", "functions": functions}, open(path + ".tmp", "w"))
import os; os.replace(path + ".tmp", path)
PY
}

GW_PID=0; GW=0; ADMIN=0
start() { # DIR FUNCTIONS
  GW=$(free_port); ADMIN=$(free_port)
  mkdir -p "$1"
  routes "$1/routes.json" "$2" 10
  echo "{\"listen\": \"127.0.0.1:$GW\", \"admin_listen\": \"127.0.0.1:$ADMIN\", \"routes\": \"routes.json\", \"reload\": {\"debounce_ms\": 20, \"poll_ms\": 60000}}" >"$1/graygate.yaml"
  TOKIO_WORKER_THREADS=1 taskset -c 0 "$BIN" serve --config "$1/graygate.yaml" >"$1/log" 2>&1 & GW_PID=$!
  PIDS+=("$GW_PID")
  wait_http "http://127.0.0.1:$ADMIN/readyz"
}

check_scale() {
  start "$WORK/small" 3; local small_pid=$GW_PID small_port=$GW
  start "$WORK/large" 100000; local large_pid=$GW_PID large_port=$GW
  local small=() large=()
  for round in $(seq "$ROUNDS"); do
    for which in small large; do
      local pid port path
      if [ $which = small ]; then pid=$small_pid port=$small_port path=/fn1-canary; else pid=$large_pid port=$large_port path=/fn54321-canary; fi
      taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$port$path" >/dev/null
      local t0 n t1
      t0=$(cpu_ticks "$pid")
      n=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port$path" | awk '/requests in/ {print $1}')
      t1=$(cpu_ticks "$pid")
      local us; us=$(python3 -c "print(round(($t1 - $t0) * 10000 / $n, 2))")
      if [ $which = small ]; then small+=("$us"); else large+=("$us"); fi
    done
  done
  local ms ml; ms=$(printf '%s\n' "${small[@]}" | median); ml=$(printf '%s\n' "${large[@]}" | median)
  echo "| scale | proxy CPU µs/req, 3 triggers | $ms | 100,000 triggers | $ml | ratio $(python3 -c "print(round($ml / $ms, 3))") |"
  kill "$small_pid" "$large_pid"
}

check_storm() {
  start "$WORK/storm" 1000
  routes "$WORK/storm/split10.json" 1000 10
  routes "$WORK/storm/split20.json" 1000 20
  local quiet=() storm=()
  for round in $(seq "$ROUNDS"); do
    quiet+=("$(taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" --latency "http://127.0.0.1:$GW/fn7-canary" | awk '$1 == "99%" {print $2}')")
    # One writer process swapping in pre-built files, so the storm's own CPU is a file
    # write every 100 ms, not a routes generator competing with the gateway.
    taskset -c 1 python3 - "$WORK/storm" "$((DURATION + 1))" <<'PY' &
import os, sys, time
directory, seconds = sys.argv[1], float(sys.argv[2])
contents = [open(os.path.join(directory, name), "rb").read() for name in ("split10.json", "split20.json")]
end, turn = time.monotonic() + seconds, 0
while time.monotonic() < end:
    with open(os.path.join(directory, "routes.json.tmp"), "wb") as f:
        f.write(contents[turn % 2])
    os.replace(os.path.join(directory, "routes.json.tmp"), os.path.join(directory, "routes.json"))
    turn += 1
    time.sleep(0.1)
PY
    local storm_pid=$!
    storm+=("$(taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" --latency "http://127.0.0.1:$GW/fn7-canary" | awk '$1 == "99%" {print $2}')")
    wait "$storm_pid"
  done
  to_us() { sed -E 's/us$//; s/^([0-9.]+)ms$/\1 1000/; s/^([0-9.]+)s$/\1 1000000/' | awk '{print ($2 ? $1 * $2 : $1)}'; }
  local q s; q=$(printf '%s\n' "${quiet[@]}" | to_us | median); s=$(printf '%s\n' "${storm[@]}" | to_us | median)
  local reloads; reloads=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^graygate_config_reloads_total\{result="success"\}/ {print $2}')
  echo "| storm | p99 µs quiet (c=16) | $q | reload every 100 ms | $s | ratio $(python3 -c "print(round($s / $q, 3))") ($reloads reloads) |"
  kill "$GW_PID"
}

check_memory() {
  start "$WORK/memory" 10000
  local rss; rss=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status")
  python3 - "$GW" "$GW_PID" "$rss" <<'PY'
import socket, sys, time
port, pid, rss_loaded = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rss():
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1])
# Warm the allocator with one connection's worth of work first.
def request(s):
    s.sendall(b"GET /fn1-canary HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b"v1") and not data.endswith(b"v2"):
        data += s.recv(4096)
warm = socket.create_connection(("127.0.0.1", port)); request(warm)
time.sleep(0.2); before = rss()
conns = []
for _ in range(2000):
    s = socket.create_connection(("127.0.0.1", port)); request(s); conns.append(s)
time.sleep(0.5); after = rss()
print(f"| memory | RSS with 10,000 functions | {rss_loaded / 1024:.1f} MiB | per idle keep-alive connection (2,000 open) | {(after - before) / 2000:.1f} KiB | |")
PY
  kill "$GW_PID"
}

# HTTP/2 clients (h2load, prior-knowledge h2c) against graygate and nginx's http2, both on
# core 0 with one worker, the same 90/10 split to the same upstreams; interleaved rounds.
check_h2() {
  local ngx_port; ngx_port=$(free_port)
  mkdir -p "$WORK/h2nginx"
  { nginx_head "$WORK/h2nginx"; cat <<CONF
  upstream v1 { server 127.0.0.1:$UP1; keepalive 256; }
  upstream v2 { server 127.0.0.1:$UP2; keepalive 256; }
  split_clients "\${request_id}" \$pool { 90% v1; * v2; }
  server { listen 127.0.0.1:$ngx_port http2;
    location / { proxy_pass http://\$pool; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
  } >"$WORK/h2nginx/proxy.conf"
  taskset -c 0 nginx -p "$WORK/h2nginx/" -c "$WORK/h2nginx/proxy.conf" &
  local ngx_master=$!
  PIDS+=("$ngx_master")
  start "$WORK/h2" 3
  wait_http "http://127.0.0.1:$GW/fn1-canary"
  local requests=$((20000 * DURATION)) gg=() ngx=()
  for round in $(seq "$ROUNDS"); do
    for which in nginx graygate; do
      local url pids
      if [ $which = nginx ]; then
        url="http://127.0.0.1:$ngx_port/"; pids="$ngx_master $(pgrep -P "$ngx_master" | tr '\n' ' ')"
      else
        url="http://127.0.0.1:$GW/fn1-canary"; pids=$GW_PID
      fi
      taskset -c 1 h2load -n 5000 -c 16 -m 10 "$url" >/dev/null
      local t0=0 t1=0 p out ok rps us
      for p in $pids; do t0=$((t0 + $(cpu_ticks "$p"))); done
      out=$(taskset -c 1 h2load -n "$requests" -c 16 -m 10 "$url")
      for p in $pids; do t1=$((t1 + $(cpu_ticks "$p"))); done
      ok=$(echo "$out" | awk '/^requests:/ {print $8}')
      rps=$(echo "$out" | awk '/^finished in/ {print $4}')
      [ "$ok" = "$requests" ] || { echo "h2load against $which: $ok of $requests succeeded" >&2; echo "$out" >&2; }
      us=$(python3 -c "print(round(($t1 - $t0) * 10000 / $requests, 2))")
      if [ $which = nginx ]; then ngx+=("$us $rps"); else gg+=("$us $rps"); fi
    done
  done
  local gu gr nu nr
  gu=$(printf '%s\n' "${gg[@]}" | awk '{print $1}' | median); gr=$(printf '%s\n' "${gg[@]}" | awk '{print $2}' | median)
  nu=$(printf '%s\n' "${ngx[@]}" | awk '{print $1}' | median); nr=$(printf '%s\n' "${ngx[@]}" | awk '{print $2}' | median)
  echo "| h2 | proxy CPU µs/req, nginx http2 (rps) | $nu ($nr) | graygate (rps) | $gu ($gr) | ratio $(python3 -c "print(round($gu / $nu, 3))") |"
  kill "$GW_PID" "$ngx_master"
}

echo "| check | measure | value | vs | value | |"
echo "|---|---|---:|---|---:|---|"
checks=("$@")
[ ${#checks[@]} -eq 0 ] && checks=(scale storm memory)
for check in "${checks[@]}"; do "check_$check"; done
