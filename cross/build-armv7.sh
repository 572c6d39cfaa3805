#!/usr/bin/env bash
# Build the library and the test binaries for armv7-unknown-linux-gnueabihf (32-bit ARM
# boards: Cortex-A7/A9/A15 class) and run the tests under qemu-arm -cpu cortex-a7.
#
# Debian has no usable armhf Rust std here (its dependencies do not install), so std is
# built from source with -Zbuild-std (rust-web-src; RUSTC_BOOTSTRAP=1 unlocks -Z on the
# stable Debian compiler). The first build compiles std too: ~2 min on 2 cores.
#
# Usage: cross/build-armv7.sh [TEST_BINARY_ARGS...]
# Environment:
#   QEMU_ARM_CPU=cortex-a7            CPU model for qemu-arm
#   CROSS_CARGO_ARGS="--release"      extra cargo arguments for the builds
#   CROSS_TARGET_DIR                  default target/cross
#   ARMV7_BUILD_ONLY=1                build, do not run the tests
#   CROSS_REAL_MODELS=1               also run the real-model tests (slow)
# Tests that need the real models are skipped by default: TRAMONTANE_SKIP_REAL_MODELS=1
# and TRAMONTANE_MODELS_DIR pointing at an empty dir.
# Needs cross/setup.sh first.
set -euo pipefail
# shellcheck source=cross/common.sh
source "$(dirname "$0")/common.sh"

TARGET=armv7-unknown-linux-gnueabihf
CPU=${QEMU_ARM_CPU:-cortex-a7}

cross_need "$CROSS_CARGO" "$RUSTC" arm-linux-gnueabihf-gcc qemu-arm

# No -L/QEMU_LD_PREFIX (threads hang with the cross sysroot); qemu-arm finds the
# multiarch libc6:armhf in /lib/arm-linux-gnueabihf.
unset QEMU_LD_PREFIX
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm -cpu $CPU"
cross_real_models_env
BUILD_STD=("-Zbuild-std=std,panic_unwind" --target "$TARGET")

cross_log "build the library for $TARGET ($("$RUSTC" --version))"
t0=$(date +%s)
"$CROSS_CARGO" build --lib "${BUILD_STD[@]}" "${CROSS_CARGO_ARGS_ARRAY[@]}"
echo "built in $(( $(date +%s) - t0 )) s"

cross_log "build test binaries for $TARGET"
t0=$(date +%s)
cross_test_executables "${BUILD_STD[@]}" "${CROSS_CARGO_ARGS_ARRAY[@]}"
echo "built in $(( $(date +%s) - t0 )) s"

if [ "${ARMV7_BUILD_ONLY:-0}" = 1 ]; then
    echo "ARMV7_BUILD_ONLY=1: not running the tests"
    exit 0
fi

cross_log "qemu-arm -cpu $CPU"
status=0
t0=$(date +%s)
cross_run_tests "$CPU" qemu-arm -cpu "$CPU" -- "${CROSS_TEST_EXES[@]}" -- "$@" || status=1
echo "[-cpu $CPU] done in $(( $(date +%s) - t0 )) s"
cross_summary armv7-qemu || status=1
exit "$status"
