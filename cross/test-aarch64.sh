#!/usr/bin/env bash
# Build the test suite for aarch64-unknown-linux-gnu and run every test binary under
# qemu-aarch64, once per emulated CPU model, so that each ARM kernel level is exercised:
#   cortex-a53   NEON only
#   neoverse-n1  + dotprod (and fp16)
#   max          + i8mm, sve (everything qemu implements)
#
# Usage: cross/test-aarch64.sh [TEST_BINARY_ARGS...]
#   e.g. cross/test-aarch64.sh kernels --nocapture
# Environment:
#   QEMU_CPUS="cortex-a53 neoverse-n1 max"   CPU models to run under
#   CROSS_CARGO_ARGS="--release"             extra cargo arguments for the build
#   CROSS_TARGET_DIR                         default target/cross
#   CROSS_REAL_MODELS=1                      also run the real-model tests (slow)
# Tests that need the real models are skipped by default: TRAMONTANE_SKIP_REAL_MODELS=1
# and TRAMONTANE_MODELS_DIR pointing at an empty dir (under qemu they take far too long).
# Needs cross/setup.sh first. Doc tests are not run (they are on the host).
set -euo pipefail
# shellcheck source=cross/common.sh
source "$(dirname "$0")/common.sh"

TARGET=aarch64-unknown-linux-gnu
read -r -a CPUS <<< "${QEMU_CPUS:-cortex-a53 neoverse-n1 max}"
[ "${#CPUS[@]}" -gt 0 ] || cross_die "QEMU_CPUS is empty"

cross_need "$CROSS_CARGO" "$RUSTC" aarch64-linux-gnu-gcc qemu-aarch64

# No -L/QEMU_LD_PREFIX pointing at the cross sysroot: with it every thread creation
# hangs. Without it qemu finds the multiarch libc6:arm64 in /lib/aarch64-linux-gnu.
unset QEMU_LD_PREFIX
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# For anyone who runs `cargo test/run --target aarch64-unknown-linux-gnu` with this env.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu ${CPUS[0]}"
cross_real_models_env

cross_log "build test binaries for $TARGET ($("$RUSTC" --version))"
t0=$(date +%s)
cross_test_executables --target "$TARGET" "${CROSS_CARGO_ARGS_ARRAY[@]}"
echo "built in $(( $(date +%s) - t0 )) s"

status=0
for cpu in "${CPUS[@]}"; do
    cross_log "qemu-aarch64 -cpu $cpu"
    t0=$(date +%s)
    cross_run_tests "$cpu" qemu-aarch64 -cpu "$cpu" -- "${CROSS_TEST_EXES[@]}" -- "$@" \
        || status=1
    echo "[-cpu $cpu] done in $(( $(date +%s) - t0 )) s"
done

cross_summary aarch64-qemu || status=1
exit "$status"
