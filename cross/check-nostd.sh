#!/usr/bin/env bash
# Check that the no_std + alloc core builds for bare-metal targets:
#   thumbv7em-none-eabihf   Cortex-M4F/M7 microcontrollers
#   aarch64-unknown-none    bare-metal / hypervisor-guest AArch64
# For each target:
#   1. `cargo build --lib --no-default-features` of the crate;
#   2. the firmware path of examples/embedded/firmware.rs (a model in flash, a fixed
#      context, one thread, a fixed-size output buffer) as a `#![no_std]` static library
#      with a panic handler and a bump global allocator: cross/nostd-firmware/.
# core and alloc are built from source (-Zbuild-std=core,alloc; Debian's rust-web-src,
# RUSTC_BOOTSTRAP=1 unlocks -Z on the stable Debian compiler). Nothing runs: this
# proves the core and the firmware compile with core and alloc only.
#
# Usage: cross/check-nostd.sh [TARGET...]      (default: both targets above)
# Environment:
#   CROSS_CARGO_ARGS="--release"      extra cargo arguments
#   CROSS_TARGET_DIR                  default target/cross
# Needs cross/setup.sh first.
set -euo pipefail
# shellcheck source=cross/common.sh
source "$(dirname "$0")/common.sh"

TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(thumbv7em-none-eabihf aarch64-unknown-none)

cross_need "$CROSS_CARGO" "$RUSTC"
export RUSTC_BOOTSTRAP=1

# The firmware crate resolves to the crate's versions: its lock file is a copy.
cp Cargo.lock cross/nostd-firmware/Cargo.lock

failed=()
for target in "${TARGETS[@]}"; do
    cross_log "no_std build for $target ($("$RUSTC" --version))"
    t0=$(date +%s)
    if "$CROSS_CARGO" build --lib --no-default-features -Zbuild-std=core,alloc \
            --target "$target" "${CROSS_CARGO_ARGS_ARRAY[@]}"; then
        echo "[$target] core ok in $(( $(date +%s) - t0 )) s"
    else
        echo "[$target] core FAILED" >&2
        failed+=("$target (core)")
    fi
    cross_log "no_std firmware (examples/embedded/firmware.rs) for $target"
    t0=$(date +%s)
    if "$CROSS_CARGO" build --manifest-path cross/nostd-firmware/Cargo.toml \
            -Zbuild-std=core,alloc --target "$target" "${CROSS_CARGO_ARGS_ARRAY[@]}"; then
        lib=$(find "$CARGO_TARGET_DIR/$target" -maxdepth 2 -name libtramontane_nostd_firmware.a \
            | head -n 1)
        [ -n "$lib" ] || lib="(archive not found)"
        echo "[$target] firmware ok in $(( $(date +%s) - t0 )) s: $lib"
    else
        echo "[$target] firmware FAILED" >&2
        failed+=("$target (firmware)")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "check-nostd: failed for ${failed[*]}" >&2
    exit 1
fi
echo "check-nostd: ok for ${TARGETS[*]}"
