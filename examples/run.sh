#!/usr/bin/env bash
# Runs both release pipelines (examples/functiongraph_release.py, examples/esa_release.py)
# against a fresh `graygate demo` on free loopback ports, then stops it.
#   PYTHON     a python with huaweicloudsdkfunctiongraph and alibabacloud-esa20240910
#              installed (default: python3)
#   GRAYGATE   the graygate binary (default: target/release/graygate, else target/debug)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"
graygate="${GRAYGATE:-}"
if [[ -z "$graygate" ]]; then
  for candidate in "$root/target/release/graygate" "$root/target/debug/graygate"; do
    [[ -x "$candidate" ]] && graygate="$candidate" && break
  done
fi
[[ -x "$graygate" ]] || { echo "run.sh: no graygate binary (cargo build, or set GRAYGATE)" >&2; exit 2; }

out="$(mktemp)"
"$graygate" demo --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$out" 2>&1 &
demo=$!
trap 'kill "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; rm -f "$out"' EXIT

# The demo prints the variables the SDKs need once it serves.
for _ in $(seq 1 100); do
  grep -q '^  export GW=' "$out" && break
  kill -0 "$demo" 2>/dev/null || { cat "$out" >&2; echo "run.sh: the demo exited" >&2; exit 1; }
  sleep 0.1
done
line="$(grep '^  export GW=' "$out")" || { cat "$out" >&2; echo "run.sh: the demo never printed its variables" >&2; exit 1; }
eval "$line"
echo "run.sh: graygate demo on $GW, admin on $ADMIN (pid $demo)"

# Vendor SDKs honour proxy variables; the demo is on loopback.
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy
"$python" "$here/functiongraph_release.py"
"$python" "$here/esa_release.py"
echo "run.sh: both pipelines released"
