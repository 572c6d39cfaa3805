#!/usr/bin/env bash
# The C example (examples/c/generate.c), linked statically for aarch64 against
# libtramontane.a and run under qemu-aarch64, must generate the same token ids as the
# same program built and run on the x86-64 host (greedy, tiny synthetic models).
#
#   1. libtramontane.a for aarch64-unknown-linux-gnu with Debian's toolchain
#      (scripts/build-c-lib.sh --target, dev profile at CROSS_OPT_LEVEL, target/cross),
#      and for the host with rustup's (release, the build tests/ffi.rs already made);
#   2. aarch64-linux-gnu-gcc -static generate.c libtramontane.a + the system libraries
#      Rust's std needs (no libgcc_s: a static link takes the unwinder from libgcc_eh);
#      no libstdc++, no OpenMP;
#   3. checks that the binary is static (`file`, no dynamic section, no interpreter) and
#      holds no libstdc++/OpenMP symbol;
#   4. runs both binaries with `--ids -t 0` on each model and compares the ids, under
#      every CPU model of QEMU_CPUS (NEON, dotprod, i8mm kernels against AVX2/scalar).
#
# Usage: cross/test-c-static-aarch64.sh
# Environment:
#   QEMU_CPUS="cortex-a53 neoverse-n1 max"   CPU models to run under
#   C_STATIC_MODELS="gemma3-q4_k qwen2-q4_0 llama-gqa-f16 mistral-swa-q8_0 qwen3-q8_0"
#   C_STATIC_TOKENS=24                        tokens to generate per model
#   CROSS_TARGET_DIR                          default target/cross
# Needs cross/setup.sh first. Never give qemu the cross sysroot (-L, QEMU_LD_PREFIX):
# the binary is static and needs none.
set -euo pipefail
# shellcheck source=cross/common.sh
source "$(dirname "$0")/common.sh"

TARGET=aarch64-unknown-linux-gnu
read -r -a CPUS <<< "${QEMU_CPUS:-cortex-a53 neoverse-n1 max}"
read -r -a MODELS <<< "${C_STATIC_MODELS:-gemma3-q4_k qwen2-q4_0 llama-gqa-f16 mistral-swa-q8_0 qwen3-q8_0}"
N_TOKENS=${C_STATIC_TOKENS:-24}
PROMPT="The engine temperature is"

cross_need "$CROSS_CARGO" "$RUSTC" aarch64-linux-gnu-gcc aarch64-linux-gnu-readelf \
    aarch64-linux-gnu-nm qemu-aarch64 cc file
unset QEMU_LD_PREFIX
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc

out=$CARGO_TARGET_DIR/c-static
mkdir -p "$out"
t_start=$(date +%s)

cross_log "libtramontane.a for $TARGET ($("$RUSTC" --version))"
CARGO="$CROSS_CARGO" scripts/build-c-lib.sh --debug --target "$TARGET" --prefix "$out/$TARGET"

cross_log "libtramontane.a for the host ($(env -u RUSTC rustc --version))"
# rustup's toolchain and the default target dir: the build tests/ffi.rs makes.
env -u RUSTC -u RUSTDOC -u CARGO_TARGET_DIR -u CARGO_PROFILE_DEV_OPT_LEVEL \
    -u CARGO_PROFILE_DEV_DEBUG CARGO=cargo scripts/build-c-lib.sh --prefix "$out/host"

# The system libraries of the static pkg-config file, without -lgcc_s (shared only).
native_libs() {
    sed -n 's/^Libs: [^ ]*libtramontane\.a//p' "$1/lib/pkgconfig/tramontane-static.pc" \
        | sed 's/-lgcc_s//g'
}

cross_log "link generate.c: aarch64 static, host"
rm -f "$out/generate-aarch64" "$out/generate-host"
read -r -a a64_libs <<< "$(native_libs "$out/$TARGET")"
# Rust's std refers to getaddrinfo/getpwuid_r (DNS, home_dir), which glibc warns about
# in a static link; tramontane calls neither, so those two warnings are filtered out.
aarch64-linux-gnu-gcc -static -O2 -Wall -Werror -I include examples/c/generate.c \
    "$out/$TARGET/lib/libtramontane.a" "${a64_libs[@]}" -o "$out/generate-aarch64" 2>&1 \
    | grep -v -e "in function \`std::" -e "warning: Using '\(getaddrinfo\|getpwuid_r\)'" || true
[ -x "$out/generate-aarch64" ] || cross_die "static aarch64 link failed"
read -r -a host_libs <<< "$(native_libs "$out/host")"
cc -O2 -Wall -Werror -I include examples/c/generate.c "$out/host/lib/libtramontane.a" \
    "${host_libs[@]}" -o "$out/generate-host"

cross_log "the aarch64 binary is static and needs neither libstdc++ nor OpenMP"
bin=$out/generate-aarch64
desc=$(file -b "$bin")
echo "file: $desc"
[[ $desc == *"ARM aarch64"* && $desc == *"statically linked"* ]] \
    || cross_die "not a static aarch64 executable: $desc"
dyn=$(aarch64-linux-gnu-readelf -d "$bin" 2>&1)
echo "readelf -d: ${dyn//$'\n'/ }"
[[ $dyn == *"no dynamic section"* ]] || cross_die "the binary has a dynamic section"
if aarch64-linux-gnu-readelf -l "$bin" | grep -q INTERP; then
    cross_die "the binary asks for a program interpreter"
fi
if aarch64-linux-gnu-nm "$bin" | grep -E ' (GOMP_|omp_|_ZNSt|_ZSt|_ZTVN10__cxxabiv)' | head -n 5 | grep .; then
    cross_die "libstdc++ or OpenMP symbols in the binary (above)"
fi
aarch64-linux-gnu-strip -o "$bin.stripped" "$bin"
echo "size: $(stat -c %s "$bin") bytes, $(stat -c %s "$bin.stripped") stripped"

status=0
for name in "${MODELS[@]}"; do
    model=fixtures/models-synth/$name.gguf
    [ -f "$model" ] || cross_die "missing $model"
    # Greedy, then sampled with a seed (same logits bit for bit, same random draws).
    for sampling in "-t 0" "-t 0.9 -s 7"; do
        read -r -a samp <<< "$sampling"
        args=("$model" "$PROMPT" -n "$N_TOKENS" "${samp[@]}" -c 128 --ids)
        want=$("$out/generate-host" "${args[@]}" | tr '\n' ' ')
        [ -n "$want" ] || cross_die "$name: the host binary generated no token"
        echo "$name ($sampling) x86-64: $want"
        for cpu in "${CPUS[@]}"; do
            t0=$(date +%s%N)
            got=$(qemu-aarch64 -cpu "$cpu" "$bin" "${args[@]}" | tr '\n' ' ') || got="(exit $?)"
            ms=$(( ($(date +%s%N) - t0) / 1000000 ))
            if [ "$got" = "$want" ]; then
                printf '  %-12s same ids (%d ms)\n' "$cpu" "$ms"
            else
                printf '  %-12s DIFFERENT: %s\n' "$cpu" "$got"
                status=1
            fi
        done
    done
done

echo
if [ "$status" -eq 0 ]; then
    echo "test-c-static-aarch64: ok (${#MODELS[@]} models x 2 samplers x ${#CPUS[@]} CPUs) in $(( $(date +%s) - t_start )) s"
else
    echo "test-c-static-aarch64: token ids differ between x86-64 and aarch64" >&2
fi
exit "$status"
