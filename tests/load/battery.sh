#!/usr/bin/env bash
# The slow part of the reliability battery, against the real binary on loopback:
#   reload   wrk drives an alias while the routes file is rewritten 100 times (valid and
#            invalid versions alternating, by rename and in place) and the management API
#            changes another alias concurrently: zero non-2xx answers, zero socket errors.
#   h2       h2load -n20000 -c10 -m10 during the same kind of rewrites: 0 failed.
#   slow     slowhttptest slow headers (-H), slow body (-B) and slow read (-X) with 300
#            connections each while a probe keeps asking: every probe answered 200.
#   drain    SIGTERM with 20 requests in flight (1 s upstream): all 20 get 200, exit 0.
#   floods   HTTP/2 rapid reset and CONTINUATION flood (tests/load/h2_floods.py): the
#            server hangs up on the attacker, a parallel client keeps getting 200s, RSS bounded.
# Usage: tests/load/battery.sh [reload|h2|slow|drain|floods]...   (default: all)
# PYTHON must have the `h2` package (tests/interop/requirements.txt installs it).
# Needs wrk, h2load (nghttp2-client), slowhttptest and curl; GRAYGATE_BIN picks the binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${GRAYGATE_BIN:-target/debug/graygate}
RELOAD_SECONDS=${RELOAD_SECONDS:-15}
SLOW_SECONDS=${SLOW_SECONDS:-12}
WORK=$(mktemp -d)
PIDS=()
FAILED=0
PASSED=0

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '[battery] %s\n' "$*"; }
pass() { log "PASS $*"; PASSED=$((PASSED + 1)); }
fail() { log "FAIL $*"; FAILED=$((FAILED + 1)); }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # url
  for _ in $(seq 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  log "timed out waiting for $1"; return 1
}

UP1=$(free_port); UP2=$(free_port); SLOW=$(free_port)
"$BIN" echo-backend --listen "127.0.0.1:$UP1" --name v1 >/dev/null & PIDS+=($!)
"$BIN" echo-backend --listen "127.0.0.1:$UP2" --name v2 >/dev/null & PIDS+=($!)
"$BIN" echo-backend --listen "127.0.0.1:$SLOW" --name slow --delay-ms 1000 >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UP1/" && wait_http "http://127.0.0.1:$UP2/"

routes() { # $1: weight of v2 in alias prod (0: none); $2: "bad" for an invalid file
  local weights=""
  [ "$1" -gt 0 ] && weights=", additional_version_weights: { v2: $1 }"
  local version=v1
  [ "${2:-}" = bad ] && version=v9
  cat <<EOF
project_id: p1
functions:
  - name: hello
    upstream: http://127.0.0.1:$UP1
    versions:
      - { version: v1, upstream: "http://127.0.0.1:$UP1" }
      - { version: v2, upstream: "http://127.0.0.1:$UP2" }
    aliases:
      - { name: prod, version: $version$weights }
      - { name: api, version: v1 }
    triggers:
      - { target: prod }
      - { target: api }
  - name: slow
    upstream: http://127.0.0.1:$SLOW
    timeout_ms: 10000
    triggers:
      - { target: latest }
EOF
}

GW=0; ADMIN=0; GW_PID=0
start_gateway() {
  local dir=$WORK/gw-$RANDOM
  mkdir -p "$dir"
  GW=$(free_port); ADMIN=$(free_port)
  routes 10 >"$dir/routes.yaml"
  cat >"$dir/graygate.yaml" <<EOF
listen: 127.0.0.1:$GW
admin_listen: 127.0.0.1:$ADMIN
routes: routes.yaml
reload: { debounce_ms: 50, poll_ms: 1000 }
admin: { tokens: ["battery-token"] }
EOF
  RUST_LOG=error "$BIN" serve --config "$dir/graygate.yaml" & GW_PID=$!
  PIDS+=("$GW_PID")
  ROUTES_FILE=$dir/routes.yaml
  wait_http "http://127.0.0.1:$ADMIN/readyz"
}

rewrite_routes() { # $1: number of rewrites, $2: seconds between them
  for i in $(seq "$1"); do
    local state=ok
    [ $((i % 3)) -eq 0 ] && state=bad
    if [ $((i % 2)) -eq 0 ]; then
      routes $(( (i % 9) + 1 )) "$state" >"$ROUTES_FILE.tmp" && mv "$ROUTES_FILE.tmp" "$ROUTES_FILE"
    else
      routes $(( (i % 9) + 1 )) "$state" >"$ROUTES_FILE"
    fi
    sleep "$2"
  done
  routes 10 >"$ROUTES_FILE"   # end on a valid file
}

api_changes() { # $1: number of alias updates through the management API
  local urn="urn:fss:local:p1:function:default:hello:latest" failures=0
  for i in $(seq "$1"); do
    local body="{\"version\": \"v1\", \"additional_version_weights\": {\"v2\": $(( (i % 50) + 1 ))}}"
    curl -sS -o /dev/null -w '%{http_code}\n' -X PUT -H 'X-Auth-Token: battery-token' -d "$body" \
      "http://127.0.0.1:$ADMIN/v2/p1/fgs/functions/$urn/aliases/api" | grep -q '^200$' || failures=$((failures + 1))
    sleep 0.1
  done
  echo "$failures" >"$WORK/api-failures"
}

check_reload() {
  start_gateway
  log "reload: wrk -c32 for ${RELOAD_SECONDS}s, 100 file rewrites, 50 API changes"
  wrk -t2 -c32 -d"${RELOAD_SECONDS}s" "http://127.0.0.1:$GW/hello-prod" >"$WORK/wrk.txt" 2>&1 &
  local wrk_pid=$!
  rewrite_routes 100 "$(python3 -c "print(max(0.02, ($RELOAD_SECONDS - 3) / 100))")" &
  local rewrite_pid=$!
  api_changes 50 &
  local api_pid=$!
  wait "$wrk_pid" "$rewrite_pid" "$api_pid"
  cat "$WORK/wrk.txt"
  local requests
  requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
  if grep -qE 'Non-2xx|Socket errors' "$WORK/wrk.txt"; then
    fail "reload: errors under reload (see wrk output above)"
  elif [ "${requests:-0}" -lt 1000 ]; then
    fail "reload: only ${requests:-0} requests; too little load to prove anything"
  elif [ "$(cat "$WORK/api-failures")" != 0 ]; then
    fail "reload: $(cat "$WORK/api-failures") management API changes failed"
  else
    pass "reload: $requests requests, 0 non-2xx, 0 socket errors, 50 API changes"
  fi
  local reloads
  reloads=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | grep '^graygate_config_reloads_total')
  log "reload: $(echo "$reloads" | tr '\n' ' ')"
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
}

check_h2() {
  start_gateway
  log "h2: h2load -n20000 -c10 -m10 while the routes file is rewritten"
  rewrite_routes 50 0.05 &
  local rewrite_pid=$!
  h2load -n20000 -c10 -m10 "http://127.0.0.1:$GW/hello-prod" >"$WORK/h2load.txt" 2>&1 || true
  wait "$rewrite_pid"
  grep -E 'requests:|status codes:' "$WORK/h2load.txt"
  if grep -qE 'requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, 0 errored, 0 timeout' "$WORK/h2load.txt" \
     && grep -qE 'status codes: 20000 2xx' "$WORK/h2load.txt"; then
    pass "h2: 20000 h2c requests, 0 failed"
  else
    fail "h2: h2load saw failures"
  fi
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
}

check_slow() {
  start_gateway
  for mode in -H -B -X; do
    log "slow: slowhttptest $mode -c 300 for ${SLOW_SECONDS}s with a probe every 0.5 s"
    local extra=()
    [ "$mode" = -X ] && extra=(-k 2 -n 5 -w 10 -y 20 -z 32)
    [ "$mode" = -B ] && extra=(-t POST -s 8192)
    slowhttptest "$mode" -c 300 -r 100 -i 5 -l "$SLOW_SECONDS" "${extra[@]}" -u "http://127.0.0.1:$GW/hello-prod" \
      >"$WORK/slow$mode.txt" 2>&1 &
    local slow_pid=$!
    local probes=0 bad=0
    sleep 2
    while kill -0 "$slow_pid" 2>/dev/null; do
      code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$GW/hello-api" || echo 000)
      probes=$((probes + 1)); [ "$code" = 200 ] || bad=$((bad + 1))
      sleep 0.5
    done
    wait "$slow_pid" || true
    if [ "$probes" -gt 3 ] && [ "$bad" -eq 0 ]; then
      pass "slow $mode: $probes probes, all 200"
    else
      fail "slow $mode: $bad of $probes probes failed"
    fi
  done
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
}

check_drain() {
  start_gateway
  log "drain: 20 requests in flight to a 1 s upstream, then SIGTERM"
  local clients=()
  for i in $(seq 20); do
    curl -s -o /dev/null -m 15 -w '%{http_code}\n' "http://127.0.0.1:$GW/slow-latest" >"$WORK/drain-$i" &
    clients+=($!)
  done
  sleep 0.4
  kill -TERM "$GW_PID"
  local status=0
  wait "$GW_PID" || status=$?
  wait "${clients[@]}" || true
  local ok
  ok=$(cat "$WORK"/drain-* | grep -c '^200$' || true)
  if [ "$ok" -eq 20 ] && [ "$status" -eq 0 ]; then
    pass "drain: 20 of 20 in-flight requests answered 200, exit status 0"
  else
    fail "drain: $ok of 20 answered 200, exit status $status"
  fi
}

check_floods() {
  start_gateway
  if "${PYTHON:-python3}" tests/load/h2_floods.py "$GW" "$GW_PID"; then
    pass "floods: rapid reset and CONTINUATION flood contained"
  else
    fail "floods: see h2_floods output above"
  fi
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
}

checks=("$@")
[ ${#checks[@]} -eq 0 ] && checks=(reload h2 slow drain floods)
for check in "${checks[@]}"; do "check_$check"; done
echo "battery: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
