#!/usr/bin/env bash
# `make fuzz`: every cargo-fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS each, starting from
# its committed seeds (fuzz/seeds/<target>; what it finds goes to fuzz/corpus/<target>, not
# committed), then the property tests with FUZZ_CASES cases. Prints executions per target and
# fails on the first crash, leaving its input in fuzz/artifacts/<target>/.
#
# libFuzzer on the stable toolchain: `--sanitizer none` (AddressSanitizer needs nightly's
# -Zsanitizer; safe Rust needs it little). With a nightly toolchain: FUZZ_SANITIZER=address
# FUZZ_TOOLCHAIN=+nightly make fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
cases=${FUZZ_CASES:-20000}
sanitizer=${FUZZ_SANITIZER:-none}
toolchain=${FUZZ_TOOLCHAIN:-}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
echo "==> building the fuzz targets"
# shellcheck disable=SC2086 # an empty toolchain is no argument
cargo $toolchain fuzz build --sanitizer "$sanitizer"

printf '%-16s %12s %10s %8s\n' target executions exec/s corpus
for target in $(cargo fuzz list); do
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  # shellcheck disable=SC2086
  if ! cargo $toolchain fuzz run --sanitizer "$sanitizer" "$target" \
      "fuzz/corpus/$target" "fuzz/seeds/$target" \
      -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz target $target failed: its input is in fuzz/artifacts/$target/"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  printf '%-16s %12s %10s %8s\n' "$target" "$runs" "$rate" "$corpus"
  rm -f "$log"
done

echo "==> property tests, $cases cases each"
PROPTEST_CASES=$cases cargo test --release --test properties -- --test-threads 2
