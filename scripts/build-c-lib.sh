#!/usr/bin/env bash
# Build the C libraries (libtramontane.a and libtramontane.so: this crate with the `ffi`
# feature) and install them with the header, pkg-config files and the CMake package:
#
#   PREFIX/include/tramontane.h
#   PREFIX/lib/libtramontane.a, PREFIX/lib/libtramontane.so
#   PREFIX/lib/pkgconfig/tramontane.pc          shared library
#   PREFIX/lib/pkgconfig/tramontane-static.pc   static library (+ the libraries Rust's std needs)
#   PREFIX/lib/cmake/Tramontane/TramontaneConfig.cmake, FindTramontane.cmake
#
# Usage: scripts/build-c-lib.sh [--prefix DIR] [--target TRIPLE] [--debug] [-- CARGO_ARGS...]
#   --prefix DIR     where to install (default: TARGET_DIR/c, TARGET_DIR being cargo's)
#   --target TRIPLE  cross-compile (e.g. aarch64-unknown-linux-gnu, with its linker set up
#                    as in cross/); the pkg-config files then list that target's libraries
#   --debug          the dev profile instead of release
# The build itself is one command (the crate's [lib] stays an rlib, so no_std builds of
# the core never link a staticlib):
#   cargo rustc --release --features ffi --lib --crate-type staticlib,cdylib
# The installed pkg-config/CMake files are relocatable (paths relative to themselves).
set -euo pipefail
caller_dir=$PWD
cd "$(dirname "$0")/.."
prefix=
target=
profile=release
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) prefix=$2; shift 2 ;;
        --target) target=$2; shift 2 ;;
        --debug) profile=debug; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-c-lib: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
cargo=${CARGO:-cargo}
target_dir=$("$cargo" metadata --no-deps --format-version 1 \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
prefix=${prefix:-$target_dir/c}
case $prefix in /*) ;; *) prefix=$caller_dir/$prefix ;; esac

args=(rustc --lib --features ffi --crate-type staticlib,cdylib)
[ "$profile" = release ] && args+=(--release)
[ -n "$target" ] && args+=(--target "$target")
"$cargo" "${args[@]}" "$@"
out=$target_dir/${target:+$target/}$profile

# What a static link needs besides the archive: Rust's std's system libraries for this
# target, as rustc reports them for an empty staticlib (the crate adds none of its own).
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
: > "$tmp/empty.rs"
native=$("${RUSTC:-rustc}" --crate-type staticlib --print native-static-libs ${target:+--target "$target"} \
    -o "$tmp/libempty.a" "$tmp/empty.rs" 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -n 1)
[ -n "$native" ] || native="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
# libc is linked anyway; the rest goes to the pkg-config and CMake files.
native=$(printf '%s\n' "$native" | sed 's/ -lc$//; s/^-lc$//')
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

mkdir -p "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/Tramontane"
install -m 644 include/tramontane.h "$prefix/include/"
install -m 644 "$out/libtramontane.a" "$prefix/lib/"
install -m 755 "$out/libtramontane.so" "$prefix/lib/"
for pc in tramontane tramontane-static; do
    sed -e "s|@VERSION@|$version|g" -e "s|@NATIVE_LIBS@|$native|g" \
        "packaging/$pc.pc.in" > "$prefix/lib/pkgconfig/$pc.pc"
done
sed -e "s|@VERSION@|$version|g" -e "s|@NATIVE_LIBS@|$native|g" \
    packaging/cmake/TramontaneConfig.cmake.in > "$prefix/lib/cmake/Tramontane/TramontaneConfig.cmake"
sed -e "s|@VERSION@|$version|g" packaging/cmake/TramontaneConfigVersion.cmake.in \
    > "$prefix/lib/cmake/Tramontane/TramontaneConfigVersion.cmake"
install -m 644 packaging/cmake/FindTramontane.cmake "$prefix/lib/cmake/Tramontane/"
echo "build-c-lib: installed tramontane $version ($profile${target:+, $target}) into $prefix"
