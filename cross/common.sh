# shellcheck shell=bash
# Sourced by cross/*.sh; not meant to be run on its own.
#
# Cross builds use Debian's toolchain (/usr/bin/cargo, /usr/bin/rustc, installed by
# cross/setup.sh), not rustup's: rustup cannot download targets on these machines.
# rustup's cargo comes first in PATH, so both are named by full path, and the cross
# builds go to their own target dir so they never clobber the host build in target/.

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

CROSS_CARGO=${CROSS_CARGO:-/usr/bin/cargo}
export RUSTC=${CROSS_RUSTC:-/usr/bin/rustc}
export RUSTDOC=${CROSS_RUSTDOC:-/usr/bin/rustdoc}
export CARGO_TARGET_DIR=${CROSS_TARGET_DIR:-$PWD/target/cross}
# Emulated code in a plain debug build is very slow (a synthetic-model smoke test that
# takes 25 s on the host ran for more than 25 minutes under qemu-arm), so the cross
# builds optimize the dev/test profile while keeping debug assertions and overflow
# checks. CROSS_OPT_LEVEL=0 gives a plain debug build.
export CARGO_PROFILE_DEV_OPT_LEVEL=${CROSS_OPT_LEVEL:-2}
export CARGO_PROFILE_DEV_DEBUG=${CROSS_DEBUG:-line-tables-only}
# Extra cargo arguments for every cross build, e.g. CROSS_CARGO_ARGS="--release".
# shellcheck disable=SC2034  # used by the scripts that source this file
read -r -a CROSS_CARGO_ARGS_ARRAY <<< "${CROSS_CARGO_ARGS:-}"

# Real-model tests under emulation: the test suite skips them only when
# TRAMONTANE_SKIP_REAL_MODELS=1 *and* the model file is missing, and a debug build of
# a 0.5B model under qemu takes many minutes per prompt. So by default the models
# directory is pointed at an empty one for the test binaries. CROSS_REAL_MODELS=1
# keeps the real models (TRAMONTANE_MODELS_DIR or fixtures/models) and does not skip.
cross_real_models_env() {
    if [ "${CROSS_REAL_MODELS:-0}" = 1 ]; then
        unset TRAMONTANE_SKIP_REAL_MODELS
        echo "CROSS_REAL_MODELS=1: real-model tests run under emulation (slow)"
    else
        export TRAMONTANE_SKIP_REAL_MODELS=1
        export TRAMONTANE_MODELS_DIR="$CARGO_TARGET_DIR/no-real-models-under-qemu"
        rm -rf -- "$TRAMONTANE_MODELS_DIR"
    fi
}

cross_die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# cross_need TOOL... — fail with a hint when a tool is missing.
cross_need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 \
            || cross_die "$tool not found; run cross/setup.sh first (as root)"
    done
}

cross_log() {
    printf '\n==> %s\n' "$*"
}

# cross_test_executables CARGO_ARGS... — build the test binaries (lib unit tests and
# tests/*; no doc tests) with `cargo test --no-run` and set the array CROSS_TEST_EXES
# to their paths. Cargo's progress and rendered diagnostics go to stderr.
CROSS_TEST_EXES=()
cross_test_executables() {
    local json line rc=0
    json=$(mktemp)
    "$CROSS_CARGO" test --no-run --lib --tests \
        --message-format=json-render-diagnostics "$@" > "$json" || rc=$?
    if [ "$rc" -ne 0 ]; then
        rm -f "$json"
        cross_die "cargo test --no-run failed (exit $rc)"
    fi
    CROSS_TEST_EXES=()
    while IFS= read -r line; do
        # Test harness binaries only: an artifact whose profile has "test":true and
        # whose executable is a path (a bin built for the integration tests has a
        # non-test profile; libraries have "executable":null).
        [[ $line == *'"reason":"compiler-artifact"'* ]] || continue
        [[ $line =~ \"profile\":\{[^}]*\"test\":true ]] || continue
        [[ $line =~ \"executable\":\"([^\"]+)\" ]] || continue
        CROSS_TEST_EXES+=("${BASH_REMATCH[1]}")
    done < "$json"
    rm -f "$json"
    [ "${#CROSS_TEST_EXES[@]}" -gt 0 ] || cross_die "cargo built no test executable"
    echo "test executables:"
    printf '  %s\n' "${CROSS_TEST_EXES[@]}"
}

# cross_run_tests LABEL EMULATOR_CMD... -- EXES... -- TEST_ARGS...
# Runs every test executable under the emulator command, keeps going after a failure,
# prints a summary (tests summed from libtest's "test result:" lines) and returns 1 if
# any binary failed.
CROSS_TOTAL_PASSED=0
CROSS_TOTAL_FAILED=0
CROSS_FAILED_RUNS=()
cross_run_tests() {
    local label=$1; shift
    local emu=() exes=() args=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do emu+=("$1"); shift; done
    [ "$#" -gt 0 ] && shift
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do exes+=("$1"); shift; done
    [ "$#" -gt 0 ] && shift
    args=("$@")

    local exe out rc passed failed line status=0
    out=$(mktemp)
    for exe in "${exes[@]}"; do
        echo "--- [$label] $(basename "$exe")"
        rc=0
        "${emu[@]}" "$exe" "${args[@]}" 2>&1 | tee "$out" || rc=$?
        passed=0 failed=0
        while IFS= read -r line; do
            if [[ $line =~ ([0-9]+)\ passed\;\ ([0-9]+)\ failed ]]; then
                passed=$((passed + BASH_REMATCH[1]))
                failed=$((failed + BASH_REMATCH[2]))
            fi
        done < <(grep '^test result:' "$out" || true)
        CROSS_TOTAL_PASSED=$((CROSS_TOTAL_PASSED + passed))
        CROSS_TOTAL_FAILED=$((CROSS_TOTAL_FAILED + failed))
        if [ "$rc" -ne 0 ]; then
            CROSS_FAILED_RUNS+=("[$label] $(basename "$exe") (exit $rc)")
            status=1
        fi
    done
    rm -f "$out"
    return "$status"
}

# cross_summary NAME — print totals and the failed runs; return 1 on any failure.
cross_summary() {
    local name=$1
    echo
    if [ "${#CROSS_FAILED_RUNS[@]}" -gt 0 ]; then
        echo "failed runs:"
        printf '  %s\n' "${CROSS_FAILED_RUNS[@]}"
    fi
    echo "$name: $CROSS_TOTAL_PASSED passed, $CROSS_TOTAL_FAILED failed"
    [ "${#CROSS_FAILED_RUNS[@]}" -eq 0 ]
}
