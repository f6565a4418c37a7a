#!/usr/bin/env bash
# Run every papr-fw test on this machine (idempotent set-up included):
#   host unit tests, lint, the image budget, the QEMU tests against QEMU 7.2
#   and 10.0 (two QEMUs at a time), and a bounded fuzzing run.
# Environment: PAPR_QEMU_VERSIONS (default "7.2 10.0"), PAPR_FUZZ_SECONDS
# (default 30 per target; 0 skips fuzzing), extra args go to the QEMU test run
# (e.g. a test name filter).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"
step() { printf '\n=== %s (%ds)\n' "$*" "$SECONDS" >&2; }

step "set-up"
"$here/setup.sh"

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings

step "host unit tests"
cargo test -q --workspace --lib --bins

step "firmware image"
cargo fw

for v in ${PAPR_QEMU_VERSIONS:-7.2 10.0}; do
    step "QEMU tests on QEMU $v"
    PAPR_QEMU=$v cargo test -q -p qemu-tests --tests -- --test-threads=2 "$@"
done

if [ "${PAPR_FUZZ_SECONDS:-30}" != 0 ] && [ -x "$root/fuzz/run.sh" ]; then
    step "fuzzing (${PAPR_FUZZ_SECONDS:-30} s per target)"
    "$root/fuzz/run.sh" "${PAPR_FUZZ_SECONDS:-30}"
fi

step "all tests passed"
