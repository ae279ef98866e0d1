#!/usr/bin/env bash
# Install what building ragchat needs beyond Rust: llama.cpp (the local chat
# model) is compiled from source with cmake, and its bindings are generated
# with libclang. Does nothing when both are present.
#
# Debian/Ubuntu: installs `cmake libclang-dev` with apt-get (through sudo when
# not root). Elsewhere it says what to install. Building with
# `cargo build --no-default-features` drops the local model and needs neither.
set -euo pipefail

have_libclang() {
    [ -n "${LIBCLANG_PATH:-}" ] && return 0
    compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null ||
        compgen -G "/usr/lib/x86_64-linux-gnu/libclang*.so*" >/dev/null ||
        compgen -G "/usr/lib64/libclang.so*" >/dev/null
}

if command -v cmake >/dev/null && have_libclang; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "setup-build-deps: install cmake and libclang (the clang development library), then rerun" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup-build-deps: run as root or install sudo: apt-get install cmake libclang-dev" >&2; exit 1; }
    sudo=sudo
fi
echo "setup-build-deps: installing cmake and libclang-dev"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends cmake libclang-dev >/dev/null
