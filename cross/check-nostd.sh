#!/usr/bin/env bash
# Check that the no_std + alloc core builds for bare-metal targets:
#   thumbv7em-none-eabihf   Cortex-M4F/M7 microcontrollers
#   aarch64-unknown-none    bare-metal / hypervisor-guest AArch64
# `cargo build --lib --no-default-features` with core and alloc built from source
# (-Zbuild-std=core,alloc; Debian's rust-web-src, RUSTC_BOOTSTRAP=1 unlocks -Z on the
# stable Debian compiler). Nothing runs: this proves the core compiles and links no std.
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

failed=()
for target in "${TARGETS[@]}"; do
    cross_log "no_std build for $target ($("$RUSTC" --version))"
    t0=$(date +%s)
    if "$CROSS_CARGO" build --lib --no-default-features -Zbuild-std=core,alloc \
            --target "$target" "${CROSS_CARGO_ARGS_ARRAY[@]}"; then
        echo "[$target] ok in $(( $(date +%s) - t0 )) s"
    else
        echo "[$target] FAILED" >&2
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "check-nostd: failed for ${failed[*]}" >&2
    exit 1
fi
echo "check-nostd: ok for ${TARGETS[*]}"
