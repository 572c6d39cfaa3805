#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine as on a developer's: installs what it
# needs (idempotently), then runs every test. Usage: ./run-tests.sh [--quick]
#   --quick   host tests only (no cross builds, no qemu runs)
# Environment:
#   TRAMONTANE_MODELS_DIR   where the real models are cached (default fixtures/models)
#   TRAMONTANE_SKIP_CROSS=1 same as --quick
set -euo pipefail
cd "$(dirname "$0")"
quick=${TRAMONTANE_SKIP_CROSS:-0}
[ "${1:-}" = "--quick" ] && quick=1
step() { printf '\n==> %s\n' "$*"; }
t_start=$(date +%s)

step "python tools (gguf-py, numpy) for the cross-checks"
if ! python3 -c 'import gguf, numpy' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check gguf numpy
fi

step "real models (fetched and sha256-checked on first use)"
fixtures/fetch-models.sh all
fixtures/tokenizer/make_vocabs.sh   # Llama 3 and Tekken vocab-only files for the tokenizer tests

step "no std:: in the core: clippy std_instead_of_core / std_instead_of_alloc"
# The no_std core (parser, kernels, model, tokenizer, sampler, generation), and the
# std build with the C ABI, where std:: is left only for what core/alloc do not have.
cargo clippy --release --lib --no-default-features -- \
    -D clippy::std_instead_of_core -D clippy::std_instead_of_alloc
cargo clippy --release --lib --features ffi -- \
    -D clippy::std_instead_of_core -D clippy::std_instead_of_alloc

step "API docs build without warnings (broken links included), private items too"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet

step "host test suite (release)"
cargo test --release --all-targets
cargo test --release --doc

step "repacked Q5_0 at the avx2 level, the one level that repacks (forced where the CPU has more)"
# Bit-identical logits, prefill and decode; the file's pages released (Linux); zero
# allocations per token. The kernel tests cover the layout at every level already.
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    TRAMONTANE_KERNELS=avx2 cargo test --release --test determinism repacked
    TRAMONTANE_KERNELS=avx2 cargo test --release --test alloc
else
    echo "no AVX2 on this CPU: the repack does nothing here (the kernel tests still cover its layout)"
fi

step "inspect --json lists exactly what gguf-py lists, on both real models"
cargo build --release --example inspect
models_dir=${TRAMONTANE_MODELS_DIR:-fixtures/models}
for m in "$models_dir"/*.gguf; do
    target/release/examples/inspect "$m" --json > target/inspect.json
    python3 fixtures/gguf_py_check.py compare-inspect "$m" target/inspect.json
done

step "generate example end to end on the default model (--json, streaming, bad input)"
cargo build --release --example generate
fixtures/check-generate.sh target/release/examples/generate

step "C ABI tools: cbindgen (header check) and valgrind (tests/ffi.rs ran them if present)"
if ! command -v cbindgen > /dev/null || ! command -v valgrind > /dev/null; then
    command -v cbindgen > /dev/null || cargo install --locked cbindgen --version 0.29.4
    if ! command -v valgrind > /dev/null; then
        sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -q && "${sudo[@]}" apt-get install -y -q valgrind
    fi
    TRAMONTANE_REQUIRE_CBINDGEN=1 TRAMONTANE_REQUIRE_VALGRIND=1 \
        cargo test --release --test ffi -- header valgrind
fi

if [ "$quick" != 1 ]; then
    step "cross toolchains (Debian packages)"
    cross/setup.sh
    step "no_std core for thumbv7em-none-eabihf and aarch64-unknown-none"
    cross/check-nostd.sh
    step "aarch64 test suite under qemu (cortex-a53, neoverse-n1, max)"
    cross/test-aarch64.sh
    step "C example linked statically for aarch64: same token ids under qemu as on x86-64"
    cross/test-c-static-aarch64.sh
fi
echo
echo "all tests passed in $(( $(date +%s) - t_start )) s"
