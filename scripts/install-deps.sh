#!/usr/bin/env bash
# Installs the system packages anycore's GPU tests need on Debian or Ubuntu:
# the Vulkan loader and Mesa's Vulkan drivers, which include llvmpipe, a
# software adapter that runs every shader on the CPU when there is no GPU.
# With --numpy it also installs NumPy and SciPy, the oracles of
# tests/numpy_oracle.rs (SciPy for the image kernels); with --video, ffmpeg,
# the producer and consumer of tests/video.rs's pipe; with --nats,
# nats-server, which tests/pool.rs starts with JetStream. Any may be given.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

if ! command -v apt-get >/dev/null; then
    echo "install-deps.sh: no apt-get here; install your distribution's Vulkan loader" \
         "and Mesa Vulkan drivers by hand" >&2
    exit 1
fi
$sudo apt-get update -qq
packages="mesa-vulkan-drivers libvulkan1"
numpy=""
for arg in "$@"; do
    case "$arg" in
        --numpy) numpy=1 ;;
        --video) packages="$packages ffmpeg" ;;
        --nats) packages="$packages nats-server" ;;
        *) echo "install-deps.sh: unknown option $arg (--numpy, --video, --nats)" >&2; exit 2 ;;
    esac
done
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null

if [ -n "$numpy" ]; then
    python3 -m pip install -q numpy scipy
fi
echo "install-deps.sh: installed $packages${numpy:+, numpy and scipy}"
