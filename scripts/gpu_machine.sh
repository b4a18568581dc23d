#!/usr/bin/env bash
# Runs the GPU tests, `anycore bench` and torch timings on a lent machine with a real GPU
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
    export ANYCORE_CACHE_DIR=/tmp/anycore-cache
    status=0
    for t in .dev/bin/test-*; do
        echo "== $t"
        "$t" > /tmp/test.log 2>&1 || status=1
        grep -E "^test |test result|panicked|FAILED" /tmp/test.log | tee -a "$OUT/tests.txt" || true
    done
    echo "== where auto puts jobs"
    placement_sweep "1024 65536 1048576 16777216 67108864" "64 256 1024 2048 4096" "64 512 4096" |
        tee "$OUT/placement.txt"
    echo "== anycore bench (the GPU targets of issue 4 need matmul at 4096)"
    .dev/bin/anycore bench --json "$OUT/bench.json" --svg "$OUT/bench.svg" 2>&1 |
        tee "$OUT/bench.txt" || status=1
    .dev/bin/anycore bench --kernel matmul --sizes 4096 --json "$OUT/bench-4096.json" 2>&1 |
        tee "$OUT/bench-4096.txt" || status=1
    echo "== timings (torch on the same card as a reference)"
    python3 scripts/gpu_timing.py .dev/bin/anycore 2>&1 | tee "$OUT/timing.txt" || status=1
    return $status
}

# One batch of `auto` jobs of growing size (axpy lengths, matmul and
# mandelbrot edges), run one at a time, and where each went and why.
placement_sweep() {
    local jobs=/tmp/sweep.jsonl results=/tmp/sweep-results.jsonl n
    : > "$jobs"
    for n in $1; do
        echo "{\"id\": \"axpy $n\", \"kernel\": \"axpy\", \"params\": {\"a\": 2}, \"inputs\": {\"x\": {\"random\": {\"dtype\": \"f32\", \"shape\": [$n]}}, \"y\": {\"random\": {\"dtype\": \"f32\", \"shape\": [$n]}}}}" >> "$jobs"
    done
    for n in $2; do
        echo "{\"id\": \"matmul $n\", \"kernel\": \"matmul\", \"inputs\": {\"a\": {\"random\": {\"dtype\": \"f32\", \"shape\": [$n, $n]}}, \"b\": {\"random\": {\"dtype\": \"f32\", \"shape\": [$n, $n]}}}}" >> "$jobs"
    done
    for n in $3; do
        echo "{\"id\": \"mandelbrot $n\", \"kernel\": \"mandelbrot\", \"params\": {\"width\": $n, \"height\": $n}}" >> "$jobs"
    done
    .dev/bin/anycore batch "$jobs" --concurrency 1 --results "$results"
    python3 - "$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    total = r.get("timings_ms", {}).get("total", 0)
    print(f"{r['id']:<18} {r.get('backend', '-'):<4} {total:10.3f} ms  {r.get('placement_reason', r.get('error'))}")
PY
}

case "${1:-}" in
    pack) pack ;;
    run) run ;;
    sweep) placement_sweep "1024 65536" "64 256" "64" ;;  # a small local try-out
    *) echo "usage: $0 pack|run|sweep" >&2; exit 2 ;;
esac
