#!/usr/bin/env bash
# deploy/ checks that need more than `cargo test` (which runs tests/deploy/main.rs):
#   static      promtool check config / check rules / test rules on deploy/prometheus;
#               kubernetes-validate --strict on deploy/kubernetes against the oldest and the
#               newest Kubernetes schemas it bundles (and on a broken copy, which must fail);
#               `kubectl kustomize` of each kustomization (the etcd overlay's patches applied),
#               where kubectl is installed
#   dockerfile  tests/deploy/dockerfile.py: the image's build stage replayed (a release build)
#               and its runtime stage run, without a container engine
#   prometheus  tests/deploy/prometheus_scrape.py: a real Prometheus scraping the image's binary
# Usage: tests/deploy/run.sh [static|dockerfile|prometheus]...   (default: all, in that order)
# Needs promtool and prometheus (Debian: apt-get install prometheus) and python3; makes
# target/deploy-venv from tests/deploy/requirements.txt. GRAYGATE_BIN overrides the binary
# the prometheus check runs (default: the one dockerfile built, else target/debug/graygate).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=target/deploy-venv
PASSED=0
FAILED=0

log() { printf '[deploy] %s\n' "$*"; }
pass() { log "PASS $*"; PASSED=$((PASSED + 1)); }
fail() { log "FAIL $*"; FAILED=$((FAILED + 1)); }
run() { # description, command...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

venv() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/deploy/requirements.txt
}

# The etcd overlay as kustomize renders it: the ConfigMap holds graygate.yaml alone, with an
# etcd block; the Deployment mounts a writable emptyDir where the snapshot is written, beside
# the ConfigMap. (tests/deploy/etcd_overlay.rs checks the patches' content.)
etcd_rendered() {
  "$VENV/bin/python" - "$1" <<'EOF'
import os, sys, yaml
objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(open(sys.argv[1])) if o}
data = objects[("ConfigMap", "graygate-config")]["data"]
assert list(data) == ["graygate.yaml"], f"ConfigMap keys {list(data)}"
server = yaml.safe_load(data["graygate.yaml"])
assert "etcd" in server and "routes" not in server, server
directory = os.path.dirname(server["etcd"]["snapshot"])
pod = objects[("Deployment", "graygate")]["spec"]["template"]["spec"]
mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
assert "/etc/graygate" in mounts, "the ConfigMap mount stays"
mount = mounts[directory]
assert not mount.get("readOnly"), mount
volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
assert "emptyDir" in volume, volume
assert objects[("StatefulSet", "graygate-etcd")]["metadata"]["namespace"] == "graygate"
EOF
}

check_static() {
  run "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
  run "promtool check rules deploy/prometheus/rules.yml" promtool check rules deploy/prometheus/rules.yml
  run "promtool test rules deploy/prometheus/rules_test.yml" promtool test rules deploy/prometheus/rules_test.yml

  venv
  local manifests=() core=()
  mapfile -t manifests < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
  mapfile -t core < <(printf '%s\n' "${manifests[@]}" | grep -v prometheus-operator/)
  # The Prometheus Operator's kinds are CRDs the validator has no schema for (it warns);
  # tests/deploy/manifests.rs checks them.
  run "kubernetes-validate --strict (Kubernetes 1.37): ${#manifests[@]} files" \
    "$VENV/bin/kubernetes-validate" --strict --quiet -k 1.37.0 "${manifests[@]}"
  run "kubernetes-validate --strict (Kubernetes 1.25): ${#core[@]} files" \
    "$VENV/bin/kubernetes-validate" --strict --quiet -k 1.25.0 "${core[@]}"
  # kustomize itself, where kubectl is installed (it is not a Debian, PyPI or npm package
  # of a recent enough version here): every kustomization renders, and what it renders passes.
  if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    local dir rendered
    for dir in deploy/kubernetes deploy/kubernetes/prometheus-operator deploy/kubernetes/etcd; do
      rendered=$(mktemp --suffix=.yaml)
      if kubectl kustomize "$dir" >"$rendered" && [ "$(grep -c '^kind:' "$rendered")" -ge 6 ] \
         && "$VENV/bin/kubernetes-validate" --strict --quiet "$rendered"; then
        pass "kubectl kustomize $dir: $(grep -c '^kind:' "$rendered") objects, valid"
      else
        fail "kubectl kustomize $dir"
      fi
      if [ "$dir" = deploy/kubernetes/etcd ]; then
        run "kubectl kustomize $dir: the patches applied" etcd_rendered "$rendered"
      fi
      rm -f "$rendered"
    done
  else
    log "kubectl kustomize: no kubectl here, the kustomizations were not rendered (tests/deploy/manifests.rs checks them)"
  fi
  local broken
  broken=$(mktemp --suffix=.yaml)
  sed 's/containerPort: 9090/containerPort: "9090"/; s/readOnlyRootFilesystem: true/readOnlyRootFilesystem: true\n            readOnlyRootFileSystem: true/' \
    deploy/kubernetes/base/deployment.yaml >"$broken"
  if "$VENV/bin/kubernetes-validate" --strict --quiet "$broken" >/dev/null 2>&1; then
    fail "kubernetes-validate accepted a Deployment with a string port and a misspelt field"
  else
    pass "kubernetes-validate rejects a Deployment with a string port and a misspelt field"
  fi
  rm -f "$broken"
}

check_dockerfile() {
  venv
  run "deploy/Dockerfile replayed (tests/deploy/dockerfile.py)" "$VENV/bin/python" tests/deploy/dockerfile.py
}

check_prometheus() {
  local bin=${GRAYGATE_BIN:-}
  if [ -z "$bin" ]; then
    bin=target/dockerfile/runtime/usr/local/bin/graygate
    [ -x "$bin" ] || bin=${CARGO_TARGET_DIR:-target}/debug/graygate
  fi
  log "prometheus: graygate binary $bin"
  run "a real Prometheus scraping graygate (tests/deploy/prometheus_scrape.py)" \
    env GRAYGATE_BIN="$bin" python3 tests/deploy/prometheus_scrape.py
}

checks=("$@")
[ ${#checks[@]} -eq 0 ] && checks=(static dockerfile prometheus)
for check in "${checks[@]}"; do
  started=$SECONDS
  "check_$check"
  log "$check: $((SECONDS - started)) s"
done
echo "deploy: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
