#!/usr/bin/env bash
# Runs the GPU tests, `anycore bench` and torch references on a lent machine
# with a real GPU (the workplace's `device` tool), which has no Rust
# toolchain: binaries are built here and carried.
#
#   scripts/gpu_machine.sh pack          # here: build, strip and pack into .dev/
#   scripts/gpu_machine.sh run           # there, with .gl and .dev carried; results in $OUT
#   scripts/gpu_machine.sh summary DIR   # the closing summary of a run's files in DIR
#   scripts/gpu_machine.sh sweep         # a small placement sweep (needs .dev/bin)
#   scripts/gpu_machine.sh experiments   # there: the memory experiment alone (~3 min)
#
# The device command:
#   for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; bash scripts/gpu_machine.sh run
#
# `run` writes at most 8 files (the most that come back) into $OUT:
#   tests.txt       per test binary: exit status, failures, "test result" lines
#   torch.json      PyTorch references on the same card (scripts/gpu_torch.py)
#   bench.json/.txt/.svg   `anycore bench`, default sweep
#   bench-chain.json       `bench --chain --sizes 2^24`: 1, 4, 16 axpy steps as
#                          separate jobs and as one pipeline, with bytes moved
#                          (its table appended to bench.txt)
#   bench-extra.json       `bench --kernel matmul --sizes 4096` and
#                          `bench --kernel axpy --kernel reduce --sizes 2^28`
#                          (their tables are appended to bench.txt)
#   log.txt         everything else: setup, whole test logs, torch's table, the
#                   placement sweep, step times, and the environment (the card,
#                   its clocks, `anycore devices`, the CPU)
# and ends with a short summary on stdout. Each step runs under `timeout`, all
# of them inside RUN_BUDGET_S (default 420 s); a failing step does not stop the
# ones after it, and the exit status is 1 when anything failed.
#
# .gl holds the Vulkan loader's .deb files (see the device tool's README);
# .dev and .gl are listed in .git/info/exclude.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")/.."

pack() {
    # Release test binaries: the card's minutes go further, and they are
    # the ones `cargo nextest run --release` has just built here.
    cargo build --release
    mkdir -p .dev/bin
    rm -f .dev/bin/*
    cargo test --release --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])' |
        while read -r name exe; do cp "$exe" ".dev/bin/test-$name"; done
    [ -e .dev/bin/test-kernels ] || { echo "pack: no test-kernels binary" >&2; exit 1; }
    cp target/release/anycore .dev/bin/anycore
    strip .dev/bin/*
    tar -C .dev -cJf .dev/bin.tar.xz bin
    rm -rf .dev/bin
    ls -la .dev
}

# ---- run, there ------------------------------------------------------------

# A progress line to the log and to the run's own stdout (fd 3), also from
# inside a step whose output goes to a file.
say() { echo "[$((SECONDS - t_start)) s] $*" | tee -a "$LOG" >&3; }

# step NAME CAP_S CMD...: runs CMD under `timeout`, for CAP_S seconds at most
# and never past the run's deadline; its output goes where the caller
# redirects it. A failure is recorded and the run goes on.
step() {
    local name=$1 cap=$2 rc=0 t0=$SECONDS left
    shift 2
    left=$((deadline - SECONDS))
    ((left < cap)) && cap=$left
    if ((cap < 5)); then
        say "$name: skipped, the run's time is up"
        failed+=("$name (skipped: no time left)")
        return 0
    fi
    timeout -k 5 "$cap" "$@" || rc=$?
    case $rc in
        0) say "$name: ok after $((SECONDS - t0)) s" ;;
        124 | 137) say "$name: TIMED OUT after $((SECONDS - t0)) s (limit $cap s)"
            failed+=("$name (timed out after $cap s)") ;;
        *) say "$name: FAILED, exit $rc after $((SECONDS - t0)) s"
            failed+=("$name (exit $rc)") ;;
    esac
    return 0
}

# `cmd ARGS...` in a report: the command line, then its output, then its exit
# status when that is not 0.
show() {
    echo "\$ $*"
    local rc=0
    "$@" 2>&1 || rc=$?
    ((rc == 0)) || echo "(exit $rc)"
    echo
}

env_info() {
    set +e
    show nvidia-smi -L
    show nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,memory.total --format=csv
    show nvidia-smi --query-gpu=driver_version,clocks.max.sm,clocks.max.mem,power.limit,pstate --format=csv
    echo "\$ lscpu | head -24"
    lscpu | head -24
    echo
    echo "\$ ldconfig -p | grep -E 'libvulkan|libEGL'"
    ldconfig -p | grep -E 'libvulkan|libEGL'
    echo "VK_DRIVER_FILES=${VK_DRIVER_FILES-}"
    echo
    show .dev/bin/anycore devices
    show .dev/bin/anycore devices --json
}

# Each test binary under ANYCORE_REQUIRE_GPU_TESTS=1, test-kernels a second
# time with the shaders' runtime bounds checks on (ANYCORE_GPU_CHECKED=1),
# within 150 s together. Failures and "test result" lines go to tests.txt,
# whole logs to log.txt.
run_tests() {
    local tests_deadline=$((SECONDS + 120)) entries=() t name label left cap rc t0
    [ -x .dev/bin/test-kernels ] && entries+=(test-kernels test-kernels+checked)
    for t in .dev/bin/test-*; do
        [ -x "$t" ] || continue
        name=${t##*/}
        # The card's time goes to the binaries that run shaders; the rest
        # (CLI, service, batch) test the CPU path, which CI covers.
        case $name in
            test-shaders | test-scan_sort_histogram | test-bench_cli | test-numpy_oracle | test-coordinator | test-residency | test-pipeline) entries+=("$name") ;;
        esac
    done
    if ((${#entries[@]} == 0)); then
        echo "== no test binaries under .dev/bin" | tee -a "$OUT/tests.txt" >>"$LOG"
        failed+=("tests (no binaries)")
        return 0
    fi
    for t in "${entries[@]}"; do
        name=${t%+checked}
        label=$name
        local envs=(-u ANYCORE_GPU_CHECKED)
        if [ "$t" != "$name" ]; then
            label="$name (ANYCORE_GPU_CHECKED=1)"
            envs=(ANYCORE_GPU_CHECKED=1)
        fi
        left=$((tests_deadline < deadline ? tests_deadline - SECONDS : deadline - SECONDS))
        cap=$((left < 90 ? left : 90))
        if ((cap < 5)); then
            echo "== $label: SKIPPED, no time left" >>"$OUT/tests.txt"
            failed+=("$label (skipped: no time left)")
            continue
        fi
        t0=$SECONDS
        rc=0
        env "${envs[@]}" timeout -k 5 "$cap" ".dev/bin/$name" >/tmp/test.log 2>&1 || rc=$?
        {
            case $rc in
                0) echo "== $label: ok after $((SECONDS - t0)) s" ;;
                124 | 137) echo "== $label: TIMED OUT after $((SECONDS - t0)) s (limit $cap s)" ;;
                *) echo "== $label: FAILED, exit $rc after $((SECONDS - t0)) s" ;;
            esac
            awk '/^test .*FAILED$|^---- |^failures:$|has been running for/ { print; next }
                 /panicked at/ { print; n = 4; next }
                 n > 0 { print; n--; next }
                 /^test result:/ { print }' /tmp/test.log | head -300
            # A crash or a hang leaves no "test result" line: show the end.
            if ((rc != 0)) && ! grep -q "^test result:" /tmp/test.log; then
                echo "-- last lines:"
                tail -30 /tmp/test.log
            fi
        } >>"$OUT/tests.txt"
        {
            echo "===== $label: exit $rc"
            head -c 2000000 /tmp/test.log
        } >>"$LOG"
        ((rc == 0)) || failed+=("test $label (exit $rc)")
        say "test $label: exit $rc after $((SECONDS - t0)) s"
    done
}

# The `results` (and, per run, everything else) of bench JSON files, in one.
merge_bench() {
    python3 - "$@" <<'PY'
import json, os, sys
out, *sources = sys.argv[1:]
merged = {"runs": [], "results": []}
for path in sources:
    if not os.path.exists(path):
        continue
    with open(path) as f:
        report = json.load(f)
    merged["results"] += report.get("results", [])
    run = {k: v for k, v in report.items() if k != "results"}
    run["source"] = os.path.basename(path)
    merged["runs"].append(run)
if merged["runs"]:
    with open(out, "w") as f:
        json.dump(merged, f, indent=2)
print(f"{out}: {len(merged['results'])} results from {len(merged['runs'])} runs")
PY
}

# The closing summary: the GPU rows of the benches, torch's key figures, the
# test counts. Exits 1 when bench.json holds no GPU row.
summary() {
    python3 - "$1" <<'PY'
import json, os, re, sys
d = sys.argv[1]

def load(name):
    try:
        with open(os.path.join(d, name)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"{name}: {e}")
        return None

def num(x):
    return "-" if x is None else f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"

status = 0
for name in ("bench.json", "bench-extra.json"):
    report = load(name)
    if report is None:
        continue
    rows = [r for r in report.get("results", []) if r.get("backend") == "gpu"]
    for m in [report.get("machine")] + [run.get("machine") for run in report.get("runs", [])][:1]:
        if m:
            print(f"{name}: gpu {m.get('gpu')}; cpu {m.get('cpu')}, {m.get('threads')} threads")
    print(f"== {name}: GPU rows ({len(rows)} of {len(report.get('results', []))})")
    print(f"{'kernel':10} {'mode':10} {'size':>10} {'median ms':>10} {'throughput':>10} {'unit':8} {'base_ratio':>10} {'bw_ratio':>8}")
    for r in rows:
        print(f"{r['kernel']:10} {r['mode']:10} {r['size']:>10} {num(r.get('median_ms')):>10} "
              f"{num(r.get('throughput')):>10} {r.get('unit', ''):8} "
              f"{num(r.get('baseline_ratio')):>10} {num(r.get('bandwidth_ratio')):>8}")
    b = report.get("baselines") or {}
    if b:
        print("baselines: " + ", ".join(f"{k} {num(v)}" for k, v in b.items()
                                        if isinstance(v, (int, float))))
    if name == "bench.json" and not rows:
        print("bench.json: NO GPU ROWS")
        status = 1

t = load("torch.json")
if t:
    print(f"== torch.json: {t.get('card')}, torch {t.get('torch')}")
    keys = ["copy_gbps", "copy_256MiB_gbps", "copy_zeros_256MiB_gbps", "copy_zeros_gbps",
            "h2d_gbps", "d2h_gbps", "h2d_pinned_gbps", "d2h_pinned_gbps",
            "matmul_4096_gflops", "matmul_4096_tf32_gflops", "sum_gbps", "sum_zeros_gbps",
            "axpy_gbps"]
    print("  ".join(f"{k} {num(t.get(k))}" for k in keys))
    for k in ("sum_gbps_by_size", "h2d_gbps_by_size", "d2h_gbps_by_size"):
        print(f"{k} ({'elements' if k.startswith('sum') else 'bytes'}): " + ", ".join(f"{n} {num(v)}" for n, v in t.get(k, {}).items()))

try:
    lines = open(os.path.join(d, "tests.txt")).read().splitlines()
except OSError as e:
    lines = []
    print(f"tests.txt: {e}")
totals = [0, 0, 0]
for line in lines:
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if m:
        totals = [a + int(b) for a, b in zip(totals, m.groups())]
heads = [l for l in lines if l.startswith("== ")]
bad = [l for l in heads if not re.search(r": ok after", l)]
print(f"== tests: {totals[0]} passed, {totals[1]} failed, {totals[2]} ignored; "
      f"{len(heads) - len(bad)} of {len(heads)} binaries ok")
for l in bad:
    print(l)
failing = [l for l in lines if re.match(r"^test .*FAILED$", l)]
for l in failing[:20]:
    print(l)
if len(failing) > 20:
    print(f"... and {len(failing) - 20} more in tests.txt")
sys.exit(status)
PY
}

run() {
    set +e
    : "${OUT:?OUT must name the folder for the results}"
    mkdir -p "$OUT"
    exec 3>&1
    LOG=$OUT/log.txt
    t_start=$SECONDS
    deadline=$((SECONDS + ${RUN_BUDGET_S:-480}))
    failed=()
    : >"$OUT/tests.txt"

    say "setup"
    {
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
        icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
        [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
        egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
        [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
        tar -C .dev -xJf .dev/bin.tar.xz || failed+=("unpacking .dev/bin.tar.xz")
        # Test binaries look for the crate where it was built (CARGO_MANIFEST_DIR,
        # CARGO_BIN_EXE_anycore).
        mkdir -p /work target/release
        [ -e /work/main ] || ln -s "$PWD" /work/main
        cp .dev/bin/anycore target/release/anycore || failed+=("copying anycore")
        ls -la .dev/bin /work/main/target/release/anycore
    } >>"$LOG" 2>&1
    export ANYCORE_REQUIRE_GPU_TESTS=1 ANYCORE_REQUIRE_NUMPY=1
    export ANYCORE_CACHE_DIR=/tmp/anycore-cache
    export PYTHONUNBUFFERED=1

    say "env"
    step env 10 bash "$self" _call env_info >"$OUT/env.txt" 2>&1

    say "tests (120 s)"
    run_tests

    say "torch references (90 s)"
    step torch 90 python3 scripts/gpu_torch.py "$OUT/torch.json" >>"$LOG" 2>&1

    # The matmul tuner logs every variant's time per shape class.
    export RUST_LOG=anycore::backend::gpu::tune=info
    rm -f /tmp/b4096.json /tmp/big.json
    say "anycore bench, matmul 4096 (90 s)"
    echo "===== anycore bench --kernel matmul --sizes 4096" >"$OUT/bench.txt"
    step bench-matmul-4096 90 .dev/bin/anycore bench --kernel matmul --sizes 4096 \
        --json /tmp/b4096.json >>"$OUT/bench.txt" 2>&1

    say "anycore bench, axpy and reduce at 2^28 (90 s)"
    echo "===== anycore bench --kernel axpy --kernel reduce --sizes 268435456" >>"$OUT/bench.txt"
    step bench-2-28 90 .dev/bin/anycore bench --kernel axpy --kernel reduce \
        --sizes 268435456 --json /tmp/big.json >>"$OUT/bench.txt" 2>&1
    say "anycore bench, default sweep (240 s)"
    echo "===== anycore bench (default sweep)" >>"$OUT/bench.txt"
    step bench 240 .dev/bin/anycore bench --json "$OUT/bench.json" --svg "$OUT/bench.svg" \
        >>"$OUT/bench.txt" 2>&1

    merge_bench "$OUT/bench-extra.json" /tmp/b4096.json /tmp/big.json >>"$LOG" 2>&1

    echo "===== anycore devices --json after the benches (matmul choices)" >>"$OUT/bench.txt"
    step devices-after 15 .dev/bin/anycore devices --json >>"$OUT/bench.txt" 2>&1

    say "staging chunk sizes for transfers (60 s)"
    for mib in 4 64; do
        echo "===== ANYCORE_STAGING_MIB=$mib: transfers" >>"$OUT/bench.txt"
        ANYCORE_STAGING_MIB=$mib step "staging-$mib" 30 .dev/bin/anycore bench --backend gpu \
            --kernel axpy --sizes 1024 --quick 2>&1 | grep -E "host↔gpu|gpu copy" >>"$OUT/bench.txt"
    done

    say "placement sweep (60 s)"
    echo "===== where auto puts jobs" >>"$LOG"
    step sweep 60 bash "$self" _call placement_sweep \
        "1024 65536 1048576 16777216 67108864" "64 256 1024 2048 4096" "64 512 4096" \
        >>"$LOG" 2>&1

    say "chains: k axpy steps as jobs and as one pipeline, 2^24 (60 s)"
    step chain 60 .dev/bin/anycore bench --chain --backend cpu,gpu --sizes 16777216 \
        --json "$OUT/bench-chain.json" >"$OUT/bench-chain.txt" 2>&1

    say "done; summary"
    summary "$OUT" || failed+=("summary (no GPU rows in bench.json, or an error above)")
    # The device tool returns 8 files: the chain's table goes into
    # bench.txt, the environment into log.txt, and empty files go (on the
    # H200, two empty chain files crowded out torch.json and tests.txt).
    { echo; echo "== bench --chain"; cat "$OUT/bench-chain.txt"; } >>"$OUT/bench.txt" 2>/dev/null
    { echo "===== env.txt"; cat "$OUT/env.txt"; } >>"$LOG" 2>/dev/null
    rm -f "$OUT/bench-chain.txt" "$OUT/env.txt"
    find "$OUT" -maxdepth 1 -type f -empty -delete
    if ((${#failed[@]})); then
        echo "== FAILED (${#failed[@]}):"
        printf '  %s\n' "${failed[@]}"
        printf 'FAILED: %s\n' "${failed[@]}" >>"$LOG"
        return 1
    fi
    echo "== all steps ok after $((SECONDS - t_start)) s"
}

# The memory experiment (issue 10), in about 3 minutes: does the card move
# zeros faster than random data (memory compression), and where do the
# memory-bound kernels stand against a copy of each? `anycore bench` of
# axpy, reduce and map at 2^26 and 2^28 on the GPU (its baselines copy 256
# MiB of random data and of zeros), then torch's copies and sums of random
# data and of zeros (`gpu_torch.py --memory-only`). Files in $OUT:
# memory.json, memory.txt (both tables), torch-memory.json; a summary on
# stdout.
experiments() {
    set +e
    : "${OUT:?OUT must name the folder for the results}"
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
    tar -C .dev -xJf .dev/bin.tar.xz
    export ANYCORE_CACHE_DIR=/tmp/anycore-exp PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >"$OUT/memory.txt" 2>&1
    echo "===== anycore bench --backend gpu --kernel axpy --kernel reduce --kernel map --sizes 2^26,2^28" >>"$OUT/memory.txt"
    timeout -k 5 150 .dev/bin/anycore bench --backend gpu --kernel axpy --kernel reduce --kernel map \
        --sizes 67108864,268435456 --json "$OUT/memory.json" >>"$OUT/memory.txt" 2>&1 ||
        echo "(bench: exit $?)" >>"$OUT/memory.txt"
    echo "===== scripts/gpu_torch.py --memory-only" >>"$OUT/memory.txt"
    timeout -k 5 90 python3 scripts/gpu_torch.py "$OUT/torch-memory.json" --memory-only \
        >>"$OUT/memory.txt" 2>&1 || echo "(torch: exit $?)" >>"$OUT/memory.txt"
    python3 - "$OUT" <<'PY'
import json, os, sys
d = sys.argv[1]
try:
    b = json.load(open(os.path.join(d, "memory.json")))
    base = b["baselines"]
    print("anycore copies (GB/s): " + ", ".join(
        f"{k} {base.get(k) or 0:.0f}" for k in
        ("gpu_buffer_copy_gbps", "gpu_kernel_copy_gbps", "gpu_kernel_copy_zeros_gbps")))
    for r in b["results"]:
        if r["backend"] == "gpu" and r["mode"] in ("resident", "back_to_back"):
            print(f"  {r['kernel']:7} 2^{r['size'].bit_length() - 1} {r['mode']:12} "
                  f"{r['throughput']:7.0f} GB/s  {r.get('bandwidth_ratio') or 0:.2f}x the copy")
except (OSError, ValueError, KeyError) as e:
    print(f"memory.json: {e}")
try:
    t = json.load(open(os.path.join(d, "torch-memory.json")))
    print("torch (GB/s): " + ", ".join(f"{k} {t[k]:.0f}" for k in
          ("copy_gbps", "copy_256MiB_gbps", "copy_zeros_256MiB_gbps", "copy_zeros_gbps",
           "sum_gbps", "sum_zeros_gbps", "axpy_gbps") if k in t))
except (OSError, ValueError) as e:
    print(f"torch-memory.json: {e}")
PY
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
    experiments) experiments ;;
    summary) summary "${2:-${OUT:-.}}" ;;
    sweep) placement_sweep "1024 65536" "64 256" "64" ;;  # a small local try-out
    _call) shift; "$@" ;;  # a function of this file, for `timeout`
    *) echo "usage: $0 pack|run|experiments|summary DIR|sweep" >&2; exit 2 ;;
esac
