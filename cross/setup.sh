#!/usr/bin/env bash
# Install the cross toolchain used by cross/*.sh (Debian bookworm, run as root).
#
# What it gives:
#   /usr/bin/cargo + /usr/bin/rustc   Debian's Rust (rustc-web), with the aarch64 std
#                                     (libstd-rust-web-dev:arm64) and the std sources
#                                     (rust-web-src) for -Zbuild-std (armv7, no_std).
#   aarch64-linux-gnu-gcc, arm-linux-gnueabihf-gcc   linkers.
#   qemu-aarch64, qemu-arm            user-mode emulators; the multiarch libc6:arm64 /
#                                     libc6:armhf are found by them without -L.
#
# rustup cannot download targets on these machines, so Debian's toolchain is used
# for every cross build; the host build keeps using rustup's cargo.
#
# Idempotent: if every package is already installed, apt-get is not run at all.
set -euo pipefail

PACKAGES=(
    rustc-web
    cargo-web
    rust-web-src
    libstd-rust-web-dev:arm64
    gcc-aarch64-linux-gnu
    libc6-dev-arm64-cross
    gcc-arm-linux-gnueabihf
    libc6-dev-armhf-cross
    qemu-user
    libc6:arm64
    libc6:armhf
)
FOREIGN_ARCHES=(arm64 armhf)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "cross/setup.sh: must run as root (or with sudo available)" >&2
        exit 1
    fi
fi

# apt-get update with a few retries (mirrors are sometimes caught mid-sync).
apt_update() {
    local attempt
    for attempt in 1 2 3; do
        if "${SUDO[@]}" apt-get update -q "$@"; then
            return 0
        fi
        [ "$attempt" -eq 3 ] && break
        echo "cross/setup.sh: apt-get update failed (attempt $attempt), retrying in $((attempt * 5))s" >&2
        sleep $((attempt * 5))
    done
    return 1
}

# A package counts as installed only when dpkg says "install ok installed".
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "cross/setup.sh: all packages already installed, nothing to do"
else
    echo "cross/setup.sh: missing: ${missing[*]}"
    have_arches=" $(dpkg --print-foreign-architectures | tr '\n' ' ') "
    for arch in "${FOREIGN_ARCHES[@]}"; do
        case "$have_arches" in
            *" $arch "*) ;;
            *) echo "cross/setup.sh: dpkg --add-architecture $arch"
               "${SUDO[@]}" dpkg --add-architecture "$arch" ;;
        esac
    done
    export DEBIAN_FRONTEND=noninteractive
    apt_update || {
        # Seen on bookworm: the bookworm-security armhf index is caught mid-sync
        # ("File has unexpected size"), and then apt drops the whole bookworm-security
        # release, the arm64 index with it, so libstd-rust-web-dev:arm64 falls back to
        # the bookworm version that does not match the host rustc-web. Fetch the lists
        # without armhf first (apt keeps them when a later update fails), then all.
        echo "cross/setup.sh: retrying apt-get update without armhf, then with it" >&2
        apt_update -o "APT::Architectures::=$(dpkg --print-architecture)" \
                   -o "APT::Architectures::=arm64" \
            || echo "cross/setup.sh: apt-get update (no armhf) failed too" >&2
        "${SUDO[@]}" apt-get update -q \
            || echo "cross/setup.sh: apt-get update failed; installing from the lists apt kept" >&2
    }
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Check that what the scripts rely on is really there.
fail=0
for tool in /usr/bin/cargo /usr/bin/rustc aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc \
            qemu-aarch64 qemu-arm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "cross/setup.sh: $tool not found after install" >&2
        fail=1
    fi
done
[ "$fail" -eq 0 ] || exit 1
echo "cross/setup.sh: $(/usr/bin/rustc --version) / $(/usr/bin/cargo --version)"
echo "cross/setup.sh: $(qemu-aarch64 --version | head -n1)"
