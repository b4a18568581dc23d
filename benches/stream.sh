#!/usr/bin/env bash
# A 4 GiB .npy through `map` and `reduce` with a 256 MiB memory budget,
# beside `cat FILE > /dev/null` timed in the same run (the file warm in the
# page cache for both), peak RSS from `--json`, and the results checked
# against NumPy a chunk at a time.
#
#   benches/stream.sh [GIB] [ROUNDS]     (defaults: 4 GiB, 2 rounds)
#
# Needs python3 with numpy, about 2×GIB of free disk, and the release
# binary (cargo build --release). Files go to $STREAM_DIR (default a
# temporary folder), removed at the end.
set -euo pipefail
gib=${1:-4}
rounds=${2:-2}
bin=${ANYCORE:-$(dirname "$0")/../target/release/anycore}
dir=${STREAM_DIR:-$(mktemp -d)}
trap 'rm -f "$dir"/big.npy "$dir"/big_out.npy "$dir"/copy.npy' EXIT
budget=256M
expr='x * 2 + 1'

python3 - "$dir/big.npy" "$gib" <<'PY'
import sys, numpy as np
path, gib = sys.argv[1], float(sys.argv[2])
n = int(gib * 2**30) // 4
out = np.lib.format.open_memmap(path, mode='w+', dtype='<f4', shape=(n,))
rng = np.random.default_rng(7)
step = 1 << 24
for i in range(0, n, step):
    m = min(step, n - i)
    out[i:i + m] = rng.standard_normal(m, dtype=np.float32)
out.flush()
PY
bytes=$(stat -c %s "$dir/big.npy")
cat "$dir/big.npy" > /dev/null  # warm the page cache

calc() { awk "BEGIN { print $1 }"; }
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); calc "$t1 - $t0"; }
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# map runs without writing its output (read and compute only), then with
# its output going to the disk (beside a `cat FILE > COPY` of the same
# bytes to the same disk: writing is what limits it there) and, where
# there is room, to /dev/shm (memory: the stream's own speed).
shm=""
if [ -d /dev/shm ] && [ "$(df --output=avail -B1 /dev/shm | tail -1)" -gt $((bytes * 2)) ]; then
    shm=$(mktemp -d /dev/shm/anycore-stream.XXXXXX)
    trap 'rm -f "$dir"/big.npy "$dir"/big_out.npy "$dir"/copy.npy; rm -rf "$shm"' EXIT
fi

row() { printf '%-14s %8.3f %8.2f %-22s %9s %7s\n' "$@"; }
printf '%-14s %8s %8s %-22s %9s %7s\n' run seconds GB/s ratio peak_MiB chunks
for r in $(seq "$rounds"); do
    t_cat=$(seconds cat "$dir/big.npy")
    row cat "$t_cat" "$(calc "$bytes / $t_cat / 1e9")" "1.00 (cat > /dev/null)" - -
    t0=$(date +%s.%N); cat "$dir/big.npy" > "$dir/copy.npy"; sync "$dir/copy.npy"; t1=$(date +%s.%N)
    t_copy=$(calc "$t1 - $t0"); rm -f "$dir/copy.npy"
    row "cat > disk" "$t_copy" "$(calc "$bytes / $t_copy / 1e9")" "$(calc "$t_cat / $t_copy") vs cat" - -
    # The disk's own write rate, past the page cache: no writer of these
    # bytes to this disk does better.
    t0=$(date +%s.%N)
    dd if="$dir/big.npy" of="$dir/copy.npy" bs=4M oflag=direct status=none
    sync "$dir/copy.npy"; t1=$(date +%s.%N)
    t_direct=$(calc "$t1 - $t0"); rm -f "$dir/copy.npy"
    row "dd direct" "$t_direct" "$(calc "$bytes / $t_direct / 1e9")" "$(calc "$t_cat / $t_direct") vs cat" - -
    for run in reduce map:unwritten map:disk ${shm:+map:memory}; do
        kernel=${run%%:*}
        args=(run "$kernel" -i x="$dir/big.npy" --memory-budget "$budget" --backend cpu --json)
        [ "$kernel" = map ] && args+=(-p "expr=$expr")
        case $run in
            map:disk) args+=(-o out="$dir/big_out.npy") ;;
            map:memory) args+=(-o out="$shm/big_out.npy") ;;
        esac
        t0=$(date +%s.%N); "$bin" "${args[@]}" > "$dir/$kernel.json"
        [ "$run" = map:disk ] && sync "$dir/big_out.npy"
        t1=$(date +%s.%N)
        t=$(calc "$t1 - $t0")
        case $run in
            map:disk) ratio="$(calc "$t_copy / $t") vs cat > disk" ;;
            *) ratio="$(calc "$t_cat / $t") vs cat" ;;
        esac
        row "$run" "$t" "$(calc "$bytes / $t / 1e9")" "$ratio" \
            "$(field "$dir/$kernel.json" "r['peak_rss_mib']")" "$(field "$dir/$kernel.json" "r['stream']['chunks']")"
        [ "$run" = map:memory ] && rm -f "$shm/big_out.npy"
    done
done

python3 - "$dir" "$expr" <<'PY'
import json, sys, numpy as np
d, expr = sys.argv[1], sys.argv[2]
x = np.load(f'{d}/big.npy', mmap_mode='r')
out = np.load(f'{d}/big_out.npy', mmap_mode='r')
assert out.shape == x.shape and out.dtype == np.float32
total, absum, worst = 0.0, 0.0, 0
step = 1 << 24
for i in range(0, x.shape[0], step):
    c = np.asarray(x[i:i + step])
    total += c.astype(np.float64).sum()
    absum += np.abs(c).astype(np.float64).sum()
    want = c * np.float32(2) + np.float32(1)
    worst = max(worst, int((np.asarray(out[i:i + step]) != want).sum()))
got = json.load(open(f'{d}/reduce.json'))['outputs']['out']['data'][0]
err = abs(got - total)
print(f"reduce: {got} vs NumPy (float64) {total}: |err| = {err:.3g}, bound 1e-5·Σ|x| = {1e-5 * absum:.3g}")
print(f"map: {worst} elements differ from NumPy float32")
sys.exit(0 if err <= 1e-5 * absum and worst == 0 else 1)
PY
