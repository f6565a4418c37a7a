#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/fuzz_targets for a bounded time and
# report executions and crashes per target.
#
#   fuzz/run.sh [seconds-per-target]      (default 60)
#
# Seeds: QEMU's reset-time trees (qemu-tests/trees/*.dtb) are copied into
# fuzz/corpus/<target>/ (kept between runs, not committed).  Crash inputs go
# to fuzz/artifacts/<target>/; turn any into a regression test in
# src/devtree/tests.rs.  Exits non-zero if a target crashed.
# Needs `cargo install cargo-fuzz` (nightly comes from rust-toolchain.toml).
set -uo pipefail
secs=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "run.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi
# cargo-fuzz builds in fuzz/target; an inherited CARGO_TARGET_DIR would
# mix its sanitizer builds with ordinary ones.
unset CARGO_TARGET_DIR

status=0
summary=()
for src in fuzz_targets/*.rs; do
    target=$(basename "$src" .rs)
    corpus=corpus/$target
    artifacts=artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    cp ../qemu-tests/trees/*.dtb "$corpus"/
    before=$(find "$artifacts" -type f | wc -l)
    log=$(mktemp)
    echo "=== $target: ${secs}s"
    cargo fuzz build -O "$target" >"$log" 2>&1 || { cat "$log"; exit 2; }
    # -max_len covers the largest seed; -timeout flags slow inputs as hangs.
    cargo fuzz run -O "$target" "$corpus" -- \
        -max_total_time="$secs" -max_len=262144 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    after=$(find "$artifacts" -type f | wc -l)
    crashes=$((after - before))
    if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then
        status=1
        tail -40 "$log"
    fi
    summary+=("$(printf '%-20s executions %10s (%s/s)  %-10s crashes %d  exit %d' \
        "$target" "${execs:-?}" "${rate:-?}" "${cov:-}" "$crashes" "$rc")")
    rm -f "$log"
done
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $status
