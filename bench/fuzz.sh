#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a set time, two at a time, and prints executions and
# crashes per target. Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#
#   bash bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 600 s, every target)
#
# Corpora grow in fuzz/corpus/<target>; crashes land in fuzz/artifacts/<target>. Logs go to
# ${FUZZ_LOG_DIR:-fuzz/logs}. The fuzz crate is its own workspace: the main build is untouched.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
logs=${FUZZ_LOG_DIR:-logs}
mkdir -p "$logs"
# No sanitizer: the code under test is safe Rust, and the panics and errors that matter show
# without one at twice the speed. -a keeps debug assertions (overflow checks) on.
flags=(-O -a --sanitizer none)
cargo +nightly fuzz build "${flags[@]}"
run() {
  local t=$1
  mkdir -p "corpus/$t"
  nice -n 10 cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1 >"$logs/$t.log" 2>&1 || true
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  if [ $((i + 1)) -lt ${#targets[@]} ]; then run "${targets[i + 1]}" & fi
  wait
done
printf '%-16s %12s %8s\n' target executions crashes
for t in "${targets[@]}"; do
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || echo '?')
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  printf '%-16s %12s %8s\n' "$t" "${execs:-?}" "$crashes"
done
