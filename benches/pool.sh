#!/usr/bin/env bash
# The cost of going through NATS: the same jobs file run by `anycore batch`
# in one process and by `anycore batch --nats` through a pool of 1, 2 and 4
# local `anycore worker --backend cpu` processes, each on a fresh
# nats-server -js (loopback, temporary store).
#
#   benches/pool.sh [TINY_JOBS] [LARGE_JOBS]     (defaults: 2000 and 8)
#
# Tiny jobs: `reduce` of 16 generated floats (jobs a second). Large jobs:
# `axpy` of two generated 8 Mi-element arrays (64 MiB in, 32 MiB out, through
# the object store; MB of input a second). Needs nats-server
# (scripts/install-deps.sh --nats) and the release binary.
set -euo pipefail
tiny=${1:-2000}
large=${2:-8}
bin=${ANYCORE:-$(cd "$(dirname "$0")/.." && pwd)/target/release/anycore}
dir=$(mktemp -d)
trap 'pkill -P $$ || true; rm -rf "$dir"' EXIT
cd "$dir"

python3 - "$tiny" "$large" <<'PY'
import json, sys
tiny, large = int(sys.argv[1]), int(sys.argv[2])
with open("tiny.jsonl", "w") as f:
    for i in range(tiny):
        x = {"random": {"dtype": "f32", "shape": [16], "seed": i}}
        f.write(json.dumps({"kernel": "reduce", "inputs": {"x": x}}) + "\n")
with open("large.jsonl", "w") as f:
    for i in range(large):
        x = {"random": {"dtype": "f32", "shape": [8 << 20], "seed": i}}
        y = {"random": {"dtype": "f32", "shape": [8 << 20], "seed": i + 1000}}
        f.write(json.dumps({"kernel": "axpy", "inputs": {"x": x, "y": y}, "params": {"a": 2},
                            "outputs": {"out": f"out{i}.npy"}}) + "\n")
PY

calc() { awk "BEGIN { print $1 }"; }
timed() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); calc "$t1 - $t0"; }
port=24222
printf '%-22s %10s %14s %14s\n' run workers tiny_jobs/s large_MB/s
t=$(timed "$bin" batch tiny.jsonl --backend cpu --concurrency 16)
l=$(timed "$bin" batch large.jsonl --backend cpu --concurrency 4)
printf '%-22s %10s %14.0f %14.0f\n' "one process" - "$(calc "$tiny / $t")" "$(calc "$large * 64 * 1.048576 / $l")"
for workers in 1 2 4; do
    port=$((port + 1))
    rm -rf store; nats-server -js -a 127.0.0.1 -p $port -sd "$dir/store" > /dev/null 2>&1 &
    nats=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
    pids=()
    for w in $(seq "$workers"); do
        "$bin" worker --nats nats://127.0.0.1:$port --backend cpu --concurrency 8 --name "w$w" 2> "w$w.log" &
        pids+=($!)
    done
    sleep 1
    t=$(timed "$bin" batch tiny.jsonl --nats nats://127.0.0.1:$port --concurrency 64)
    l=$(timed "$bin" batch large.jsonl --nats nats://127.0.0.1:$port --concurrency 4)
    printf '%-22s %10s %14.0f %14.0f\n' "through NATS" "$workers" "$(calc "$tiny / $t")" "$(calc "$large * 64 * 1.048576 / $l")"
    kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true
    kill $nats; wait $nats 2>/dev/null || true
done
