#!/usr/bin/env bash
# Installs the system packages anycore's GPU tests need on Debian or Ubuntu:
# the Vulkan loader and Mesa's Vulkan drivers, which include llvmpipe, a
# software adapter that runs every shader on the CPU when there is no GPU.
# With --numpy it also installs NumPy and SciPy, the oracles of
# tests/numpy_oracle.rs (SciPy for the image kernels).
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

if ! command -v apt-get >/dev/null; then
    echo "install-deps.sh: no apt-get here; install your distribution's Vulkan loader" \
         "and Mesa Vulkan drivers by hand" >&2
    exit 1
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null

if [ "${1:-}" = "--numpy" ]; then
    python3 -m pip install -q numpy scipy
fi
echo "install-deps.sh: Vulkan loader and Mesa drivers installed"
