#!/usr/bin/env bash
# Regenerate include/tramontane.h, the C header of src/ffi/, with cbindgen (cbindgen.toml).
# tests/ffi.rs runs this into a temporary file and fails when the checked-in header differs.
#
# Usage: scripts/gen-header.sh [OUTPUT]      (default include/tramontane.h)
# Needs cbindgen: cargo install --locked cbindgen --version 0.29.4 (the version the
# checked-in header was made with; another version may format it differently).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-include/tramontane.h}
command -v cbindgen > /dev/null || {
    echo "gen-header: cbindgen not found: cargo install --locked cbindgen --version 0.29.4" >&2
    exit 127
}
tmp=$(mktemp)
trap 'rm -f -- "$tmp"' EXIT
# Only the ffi module: the crate's other public constants are not part of the C ABI.
cbindgen --quiet --config cbindgen.toml --output "$tmp" src/ffi/mod.rs
# cbindgen writes `struct tra_model *` / `enum tra_status` in signatures; use the typedef
# names, as the documentation does (same types).
sed -e '/^typedef/!s/\b\(enum\|struct\) \(tra_[a-z_]*\)/\2/g' "$tmp" > "$out"
