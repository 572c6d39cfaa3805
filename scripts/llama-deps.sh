#!/usr/bin/env bash
# Installs, if missing, the Debian packages that building llama.cpp through the
# `llama-cpp` feature needs (llama-cpp-sys-2 runs cmake and bindgen): cmake, clang and
# libclang-dev. Idempotent: apt-get runs only when one of them is absent. Needs root
# for the install; otherwise says what to install and fails.
# Used by fixtures/reference.sh and scripts/bench-vs-llama.sh.
set -euo pipefail
missing=()
for p in cmake clang libclang-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "llama-deps.sh: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
        echo "llama-deps.sh: please install ${missing[*]} (Debian packages)" >&2
        exit 1
    fi
fi
