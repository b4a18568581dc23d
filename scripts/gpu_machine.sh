#!/usr/bin/env bash
# Runs the GPU tests and a first timing on a lent machine with a real GPU
# (the workplace's `device` tool), which has no Rust toolchain: binaries are
# built here and carried.
#
#   scripts/gpu_machine.sh pack   # here: build, strip and pack into .dev/
#   scripts/gpu_machine.sh run    # there, with .dev and .gl carried; results in $OUT
#
# .gl holds the Vulkan loader's .deb (see the device tool's README); .dev and
# .gl are listed in .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/.."

pack() {
    cargo build --release
    mkdir -p .dev/bin
    rm -f .dev/bin/*
    cargo test --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])' |
        while read -r name exe; do cp "$exe" ".dev/bin/test-$name"; done
    cp target/debug/anycore .dev/bin/anycore-debug
    cp target/release/anycore .dev/bin/anycore
    strip .dev/bin/*
    tar -C .dev -cJf .dev/bin.tar.xz bin
    rm -rf .dev/bin
    ls -la .dev
}

run() {
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
    tar -C .dev -xJf .dev/bin.tar.xz
    # Test binaries look for the crate where it was built (CARGO_MANIFEST_DIR,
    # CARGO_BIN_EXE_anycore).
    mkdir -p /work target/debug
    [ -e /work/main ] || ln -s "$PWD" /work/main
    cp .dev/bin/anycore-debug target/debug/anycore
    nvidia-smi -L | tee "$OUT/card.txt"
    .dev/bin/anycore devices | tee "$OUT/devices.txt"
    export ANYCORE_REQUIRE_GPU_TESTS=1 ANYCORE_REQUIRE_NUMPY=1
    status=0
    for t in kernels cli shaders numpy_oracle; do
        echo "== test $t"
        .dev/bin/test-$t 2>&1 | tail -n 25 | tee -a "$OUT/tests.txt" || status=1
    done
    echo "== timings"
    python3 scripts/gpu_timing.py .dev/bin/anycore 2>&1 | tee "$OUT/timing.txt" || status=1
    return $status
}

case "${1:-}" in
    pack) pack ;;
    run) run ;;
    *) echo "usage: $0 pack|run" >&2; exit 2 ;;
esac
