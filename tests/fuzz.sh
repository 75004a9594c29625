#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 20) seconds each, on
# stable Rust: `-s none` builds without a sanitizer, so no nightly is needed (debug
# assertions and overflow checks stay on with -a). Each target starts from the committed
# seeds in fuzz/seeds/<target>/ (read only) and grows a git-ignored working corpus in
# fuzz/corpus/<target>/. Exits non-zero if any target crashes, times out or runs out of
# memory: the input is then in fuzz/artifacts/<target>/; copy it to
# fuzz/regressions/<target>/ so `cargo test --test fuzz_regressions` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version

mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
  echo "fuzz: no targets found in fuzz/" >&2
  exit 1
fi
# One build of every target; each run below reuses it.
cargo fuzz build -s none -a

logs=$(mktemp -d)
failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  log="$logs/$target.log"
  if cargo fuzz run "$target" -s none -a "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    echo "fuzz $target: clean, ${runs:-?} executions in ${seconds}s"
  else
    failed+=("$target")
    echo "fuzz $target: FAILED (last lines of its log follow)"
    tail -n 40 "$log"
    ls -1 "fuzz/artifacts/$target" | sed 's|^|  artifact: fuzz/artifacts/'"$target"'/|'
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets clean"
