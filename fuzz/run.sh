#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/fuzz_targets for a bounded time and
# report executions and crashes per target.
#
#   fuzz/run.sh [seconds-per-target] [target...]   (default 60, all targets)
#
# Targets: devtree_roundtrip, fdt_reader (the FDT reader and tree);
# tree_merge (the CAS merge), cas_vector (architecture vector, platform
# support, CAS reply), cif_dispatch (the client interface on QEMU's trees),
# rtas_dispatch (the resident RTAS and its DMA-window model over the fake
# PHB), prom_env (NVRAM options, the DMA-window personality and the resident
# RTAS configuration).  Inputs kept in fuzz/regressions/<target>/ (former
# crashes) are replayed first; they must pass.
#
# Seeds: QEMU's reset-time trees (qemu-tests/trees/*.dtb) are copied into
# fuzz/corpus/<target>/ (kept between runs, not committed).  Crash inputs go
# to fuzz/artifacts/<target>/; turn any into a regression test in
# src/devtree/tests.rs.  Exits non-zero if a target crashed.
# Needs `cargo install cargo-fuzz` (nightly comes from rust-toolchain.toml).
set -uo pipefail
secs=${1:-60}
shift || true
only=("$@")
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if ! cargo fuzz --help >/dev/null 2>&1; then
    # Installed once into the cache (as qemu-tests/src/paths.rs finds it).
    cache=${PAPR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/papr-fw}
    export PATH="$cache/cargo-fuzz/bin:$PATH"
    if ! cargo fuzz --help >/dev/null 2>&1; then
        echo "run.sh: installing cargo-fuzz into $cache/cargo-fuzz" >&2
        cargo install --locked --root "$cache/cargo-fuzz" cargo-fuzz >&2 || {
            echo "run.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
            exit 2
        }
    fi
fi
# cargo-fuzz builds in fuzz/target; an inherited CARGO_TARGET_DIR would
# mix its sanitizer builds with ordinary ones.
unset CARGO_TARGET_DIR

status=0
summary=()
# Seeds shaped like each target's input (see the target's documentation).
seed() {
    local target=$1 corpus=$2 f
    case $target in
        tree_merge)
            for f in ../qemu-tests/trees/*.dtb; do
                { printf '\x00'; cat "$f"; } >"$corpus/seed-$(basename "$f")"
            done ;;
        cas_vector)
            # split, support length, placement; Linux's vector; support; CAS header.
            for f in ../qemu-tests/trees/qemu-*-kernel.dtb; do
                { printf '\x00\x63\x08\x00\xff\xff\xff\xff\x00\x4e\x12\x00\xff\xff\xff\xff\x0f\x00\x00\x05\x00\x00\x00\x00\xff\xff\xff\xff\x05\x01\xff\xc0\x20'
                  printf '\x00%.0s' $(seq 32)
                  printf '\x01\x00\xe0\x01\x00\x0a\x19'
                  printf '\x00%.0s' $(seq 22)
                  printf '\x40\x40\x00\x00\x02\x00\x00\x02\x17\x80\x18\xc0\x1a\x40\x00\x00\x00\x00\x00\x01'
                  cat "$f"; } >"$corpus/seed-$(basename "$f")"
            done ;;
        prom_env)
            { printf '\x71'; printf '\x00%.0s' $(seq 15)
              printf 'ddw-max-windows=1\0ddw-page-sizes=0x3\0ddw-inject=create:busy:3,reset:fail\0rtas-trace=on\0\0'
            } >"$corpus/seed-options" ;;
    esac
}

for src in fuzz_targets/*.rs; do
    target=$(basename "$src" .rs)
    if [ ${#only[@]} -ne 0 ] && [[ ! " ${only[*]} " =~ " $target " ]]; then
        continue
    fi
    corpus=corpus/$target
    artifacts=artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    cp ../qemu-tests/trees/*.dtb "$corpus"/
    seed "$target" "$corpus"
    before=$(find "$artifacts" -type f | wc -l)
    log=$(mktemp)
    echo "=== $target: ${secs}s"
    cargo fuzz build -O "$target" >"$log" 2>&1 || { cat "$log"; exit 2; }
    if [ -d "regressions/$target" ] && [ -n "$(ls -A "regressions/$target")" ]; then
        if ! cargo fuzz run -O "$target" regressions/"$target"/* -- -runs=0 >"$log" 2>&1; then
            echo "=== $target: a regression input fails again"
            tail -40 "$log"
            status=1
        fi
    fi
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
