#!/usr/bin/env bash
# tramontane against llama.cpp, side by side in one process (benches/vs_llama_cpp.rs,
# issue 9), or the quicker end-to-end subset (benches/e2e.rs, issue 4):
#
#   scripts/bench-vs-llama.sh                  # vs_llama_cpp: table + plot (~30-60 min here)
#   scripts/bench-vs-llama.sh --bench e2e      # e2e: the quick table (~10 min here)
#
# Environment: TRAMONTANE_BENCH_PAIRS, TRAMONTANE_BENCH_THREADS, TRAMONTANE_BENCH_MODELS,
# TRAMONTANE_BENCH_RSS_PAIRS, TRAMONTANE_BENCH_REPACK, TRAMONTANE_MODELS_DIR (see the
# benches' docs), and
#   LLAMA_ISA=native (default) | avx2   which SIMD llama.cpp is built with (below);
#   LLAMA_AMX=1                         also AMX, where the CPU lists it (off by default).
#
# Build flags. The bench links llama.cpp (llama-cpp-sys-2, built with cmake) and our
# crate into one binary. llama-cpp-sys-2 turns `-C target-cpu=native` in RUSTFLAGS into
# GGML_NATIVE=ON, but RUSTFLAGS would also compile our crate for this CPU, which
# DESIGN.md rules out (SIMD is chosen at run time; a user's build is generic). So
# RUSTFLAGS stay empty here and llama.cpp's CPU backend gets this machine's SIMD
# through ggml's own CMake options (forwarded by llama-cpp-sys-2 from GGML_* variables),
# read from /proc/cpuinfo: with LLAMA_ISA=native the same instruction sets as
# GGML_NATIVE (AVX-512 and VNNI where the CPU has them), with LLAMA_ISA=avx2 only
# AVX2/FMA/F16C/BMI2 (the level of our kernels). Its own target dir, so neither this
# build nor fixtures/reference.sh's (target/llama-cpp) rebuilds the other; the first
# build compiles llama.cpp (~10-15 min on 2 cores), after scripts/llama-deps.sh has
# installed cmake, clang and libclang-dev if they were missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=vs_llama_cpp
if [ "${1:-}" = "--bench" ]; then
    bench=${2:?--bench needs a name (vs_llama_cpp or e2e)}
    shift 2
fi
isa=${LLAMA_ISA:-native}

scripts/llama-deps.sh
fixtures/fetch-models.sh all >&2

flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]]; }
ggml=(GGML_NATIVE=OFF)
for pair in sse4_2:GGML_SSE42 avx:GGML_AVX avx2:GGML_AVX2 fma:GGML_FMA f16c:GGML_F16C bmi2:GGML_BMI2; do
    if has "${pair%%:*}"; then ggml+=("${pair#*:}=ON"); else ggml+=("${pair#*:}=OFF"); fi
done
if [ "$isa" = native ]; then
    has avx_vnni && ggml+=(GGML_AVX_VNNI=ON)
    if has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw; then
        ggml+=(GGML_AVX512=ON)
        has avx512vbmi && ggml+=(GGML_AVX512_VBMI=ON)
        has avx512_vnni && ggml+=(GGML_AVX512_VNNI=ON)
        has avx512_bf16 && ggml+=(GGML_AVX512_BF16=ON)
        # AMX only on request: on the Sapphire Rapids VM of 2026-11-28, ggml's AMX
        # matmul died with SIGILL on its first `tileloadd` (first prefill), although
        # the kernel grants the tile state. Edge CPUs have no AMX anyway.
        # (OFF spelled out: CMake's cache would keep an earlier ON.)
        for pair in amx_tile:GGML_AMX_TILE amx_int8:GGML_AMX_INT8 amx_bf16:GGML_AMX_BF16; do
            if [ "${LLAMA_AMX:-0}" = 1 ] && has "${pair%%:*}"; then
                ggml+=("${pair#*:}=ON")
            else
                ggml+=("${pair#*:}=OFF")
            fi
        done
    fi
elif [ "$isa" != avx2 ]; then
    echo "LLAMA_ISA must be native or avx2" >&2
    exit 2
fi
for kv in "${ggml[@]}"; do export "$kv"; done
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
export CARGO_TARGET_DIR="${VS_LLAMA_TARGET_DIR:-target/vs-llama-cpp-$isa}"
echo "llama.cpp build options: ${ggml[*]}; our crate: generic x86-64 (run-time dispatch)" >&2
# llama-cpp-sys-2's build script does not rerun when GGML_* change: when they differ
# from the last build's in this target dir, its build is removed so that cargo redoes it.
options_stamp="$CARGO_TARGET_DIR/ggml-options"
if [ -f "$options_stamp" ] && [ "$(cat "$options_stamp")" != "${ggml[*]}" ]; then
    echo "ggml options changed since the last build here: llama.cpp is rebuilt" >&2
    rm -rf "$CARGO_TARGET_DIR"/release/build/llama-cpp-sys-2-* \
        "$CARGO_TARGET_DIR"/release/.fingerprint/llama-cpp-sys-2-*
fi
mkdir -p "$CARGO_TARGET_DIR"
echo "${ggml[*]}" > "$options_stamp"

stamp=$(mktemp)
echo "load before: $(uptime)" >&2
cargo bench --features llama-cpp --bench "$bench" "$@"
echo "load after: $(uptime)" >&2
if [ "$bench" = vs_llama_cpp ] && [ target/vs_llama_cpp.png -nt "$stamp" ]; then
    mkdir -p docs
    cp target/vs_llama_cpp.png docs/vs_llama_cpp.png
    echo "copied target/vs_llama_cpp.png to docs/vs_llama_cpp.png" >&2
fi
rm -f "$stamp"
