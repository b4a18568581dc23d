#!/usr/bin/env python3
"""PyTorch reference figures on the same card as `anycore bench`.

Usage: python3 scripts/gpu_torch.py OUT.json [--memory-only]

--memory-only measures the device's memory figures alone (copies, sums,
axpy): the experiment that asks whether the card moves zeros faster than
random data (a GPU that compresses memory does).

Every figure is the median of REPS samples timed with CUDA events, after a
warm-up. A sample times INNER back-to-back calls between one pair of events
(INNER chosen so that a sample lasts about 2 ms, at least one call), so that
launch gaps do not swamp short operations; the figure is the sample / INNER.
Inputs are random (torch.randn), except in the rows named "zeros", which
copy and sum torch.zeros to show whether the card compresses memory.

Byte counts: copy counts read + write (2 x bytes), sum counts what it reads
(4 x n), axpy 12 bytes per element (read x and y, write y), transfers the
bytes moved. Matmul counts 2 n^3 flops. GB/s and GFLOP/s are 1e9 per second.
Pageable host memory is a plain CPU tensor; pinned is pin_memory().

Scan (torch.cumsum of int32 -> int32 on the card) counts 8 bytes per
element like anycore's scan; sort (torch.sort of int32 keys, values
dropped) and histc (torch.histc, 256 bins over [-1, 1], of float32) count
keys and 4 bytes per element.

Keys of the *_by_size maps: elements for sum, scan, sort and histogram,
bytes for transfers.
"""
import json
import statistics
import sys
import time

import torch

REPS = 15
TARGET_MS = 2.0
MAX_INNER = 500
MiB = 1 << 20


def timed(fn, reps=REPS, max_inner=MAX_INNER):
    """Median ms of one call of fn, and the wall-clock median as a check."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    estimate = max(start.elapsed_time(end), 1e-3)
    inner = max(1, min(max_inner, int(TARGET_MS / estimate)))
    gpu, wall = [], []
    for _ in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        wall.append((time.perf_counter() - t) * 1e3 / inner)
        gpu.append(start.elapsed_time(end) / inner)
    return {"ms": statistics.median(gpu), "wall_ms": statistics.median(wall),
            "min_ms": min(gpu), "max_ms": max(gpu), "inner": inner, "reps": reps}


def rate(amount, t):
    """amount (bytes or flops) per second in units of 1e9."""
    return amount / (t["ms"] * 1e-3) / 1e9


def free():
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-") or any(a != "--memory-only" for a in args[1:]):
        sys.exit("usage: gpu_torch.py OUT.json [--memory-only]")
    out_path, memory_only = args[0], "--memory-only" in args[1:]
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    r = {
        "card": torch.cuda.get_device_name(dev),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "capability": list(torch.cuda.get_device_capability(dev)),
        "memory_total_bytes": props.total_memory,
        "method": __doc__.split("\n\n", 2)[2].strip(),
    }
    details = {}

    # Device-to-device copy, 1 GiB.
    n = (1 << 30) // 4
    x = torch.randn(n, device=dev)
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x))
    details["copy_1GiB"] = t
    r["copy_ms"], r["copy_gbps"] = t["ms"], rate(2 * 4 * n, t)
    del x, y
    free()

    # The same copies and sum of zeros, and a copy of 256 MiB (anycore's
    # copy baseline size) of each: a card that compresses memory moves
    # zeros faster.
    for label, make in (("", torch.randn), ("zeros_", torch.zeros)):
        n = (256 * MiB) // 4
        x = make(n, device=dev)
        y = torch.empty_like(x)
        t = timed(lambda: y.copy_(x))
        details[f"copy_{label}256MiB"] = t
        r[f"copy_{label}256MiB_gbps"] = rate(2 * 4 * n, t)
        del x, y
        free()
    n = (1 << 30) // 4
    x = torch.zeros(n, device=dev)
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x))
    details["copy_zeros_1GiB"] = t
    r["copy_zeros_gbps"] = rate(2 * 4 * n, t)
    del x, y
    free()
    n = 1 << 26
    x = torch.zeros(n, device=dev)
    t = timed(lambda: torch.sum(x))
    details[f"sum_zeros_{n}"] = t
    r["sum_zeros_gbps"] = rate(4 * n, t)
    del x
    free()

    # Sum of float32 vectors.
    r["sum_gbps_by_size"], r["sum_ms_by_size"] = {}, {}
    for p in (20, 24, 26, 28):
        n = 1 << p
        x = torch.randn(n, device=dev)
        t = timed(lambda: torch.sum(x))
        details[f"sum_{n}"] = t
        r["sum_gbps_by_size"][str(n)] = rate(4 * n, t)
        r["sum_ms_by_size"][str(n)] = t["ms"]
        del x
        free()
    r["sum_ms"] = r["sum_ms_by_size"][str(1 << 26)]
    r["sum_gbps"] = r["sum_gbps_by_size"][str(1 << 26)]

    # axpy, y += 2 x, at 2^26 (y grows; fine for timing).
    n = 1 << 26
    x = torch.randn(n, device=dev)
    y = torch.randn(n, device=dev)
    t = timed(lambda: y.add_(x, alpha=2))
    details["axpy_67108864"] = t
    r["axpy_ms"], r["axpy_gbps"] = t["ms"], rate(12 * n, t)
    del x, y
    free()

    if not memory_only:
        # Host <-> device, pageable and pinned.
        for key in ("h2d", "d2h", "h2d_pinned", "d2h_pinned"):
            r[f"{key}_gbps_by_size"], r[f"{key}_ms_by_size"] = {}, {}
        for size in (1 * MiB, 16 * MiB, 256 * MiB):
            n = size // 4
            d = torch.randn(n, device=dev)
            host = torch.randn(n)  # pageable
            host_pinned = torch.randn(n).pin_memory()
            back = torch.empty(n)  # pageable
            back_pinned = torch.empty(n, pin_memory=True)
            cases = {
                "h2d": lambda: d.copy_(host),
                "d2h": lambda: back.copy_(d),
                "h2d_pinned": lambda: d.copy_(host_pinned),
                "d2h_pinned": lambda: back_pinned.copy_(d),
            }
            for key, fn in cases.items():
                t = timed(fn, max_inner=50)
                details[f"{key}_{size}"] = t
                r[f"{key}_gbps_by_size"][str(size)] = rate(size, t)
                r[f"{key}_ms_by_size"][str(size)] = t["ms"]
            del d, host, host_pinned, back, back_pinned
            free()
        for key in ("h2d", "d2h", "h2d_pinned", "d2h_pinned"):
            r[f"{key}_ms"] = r[f"{key}_ms_by_size"][str(256 * MiB)]
            r[f"{key}_gbps"] = r[f"{key}_gbps_by_size"][str(256 * MiB)]

        # Matmul 4096^3, float32 without TF32, then with TF32 for context.
        n = 4096
        a = torch.randn(n, n, device=dev)
        b = torch.randn(n, n, device=dev)
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        r["matmul_fp32_settings"] = {
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        }
        t = timed(lambda: torch.matmul(a, b))
        details["matmul_4096"] = t
        r["matmul_4096_ms"], r["matmul_4096_gflops"] = t["ms"], rate(2 * n**3, t)
        torch.backends.cuda.matmul.allow_tf32 = True
        t = timed(lambda: torch.matmul(a, b))
        details["matmul_4096_tf32"] = t
        r["matmul_4096_tf32_ms"], r["matmul_4096_tf32_gflops"] = t["ms"], rate(2 * n**3, t)
        torch.backends.cuda.matmul.allow_tf32 = False
        del a, b
        free()

        # The newer catalog kernels, at anycore's bench sizes.
        for key in ("scan", "sort", "histogram"):
            r[f"{key}_by_size"] = {}
        for p in (20, 24, 26):
            n = 1 << p
            ints = torch.randint(-(2**31), 2**31 - 1, (n,), dtype=torch.int32, device=dev)
            t = timed(lambda: torch.cumsum(ints, 0, dtype=torch.int32))
            details[f"scan_{n}"] = t
            r["scan_by_size"][str(n)] = {"ms": t["ms"], "gbps": rate(8 * n, t)}
            t = timed(lambda: torch.sort(ints), max_inner=50)
            details[f"sort_{n}"] = t
            r["sort_by_size"][str(n)] = {"ms": t["ms"], "mkeys_per_s": n / (t["ms"] * 1e-3) / 1e6}
            del ints
            x = torch.rand(n, device=dev) * 2 - 1
            t = timed(lambda: torch.histc(x, bins=256, min=-1.0, max=1.0))
            details[f"histogram_{n}"] = t
            r["histogram_by_size"][str(n)] = {"ms": t["ms"], "gbps": rate(4 * n, t)}
            del x
            free()

    r["details"] = details
    with open(out_path, "w") as f:
        json.dump(r, f, indent=2)

    print(f"{r['card']}, torch {r['torch']} (CUDA {r['cuda']})")
    rows = [("copy d2d 1 GiB (r+w)", r["copy_ms"], r["copy_gbps"], "GB/s")]
    for label, what in (("", "random"), ("zeros_", "zeros")):
        rows.append((f"copy d2d 256 MiB {what}", details[f"copy_{label}256MiB"]["ms"],
                     r[f"copy_{label}256MiB_gbps"], "GB/s"))
    rows.append(("copy d2d 1 GiB zeros", details["copy_zeros_1GiB"]["ms"],
                 r["copy_zeros_gbps"], "GB/s"))
    rows += [(f"sum 2^{int(k).bit_length() - 1}", r["sum_ms_by_size"][k], v, "GB/s")
             for k, v in r["sum_gbps_by_size"].items()]
    rows.append(("sum 2^26 zeros", details[f"sum_zeros_{1 << 26}"]["ms"], r["sum_zeros_gbps"], "GB/s"))
    rows.append(("axpy 2^26", r["axpy_ms"], r["axpy_gbps"], "GB/s"))
    if not memory_only:
        rows += [
            ("h2d pageable 256 MiB", r["h2d_ms"], r["h2d_gbps"], "GB/s"),
            ("d2h pageable 256 MiB", r["d2h_ms"], r["d2h_gbps"], "GB/s"),
            ("h2d pinned 256 MiB", r["h2d_pinned_ms"], r["h2d_pinned_gbps"], "GB/s"),
            ("d2h pinned 256 MiB", r["d2h_pinned_ms"], r["d2h_pinned_gbps"], "GB/s"),
            ("matmul 4096 fp32", r["matmul_4096_ms"], r["matmul_4096_gflops"], "GFLOP/s"),
            ("matmul 4096 tf32", r["matmul_4096_tf32_ms"], r["matmul_4096_tf32_gflops"], "GFLOP/s"),
        ]
        for key, unit, field in (("scan", "GB/s", "gbps"), ("sort", "Mkeys/s", "mkeys_per_s"),
                                 ("histogram", "GB/s", "gbps")):
            rows += [(f"{key} 2^{int(k).bit_length() - 1}", v["ms"], v[field], unit)
                     for k, v in r[f"{key}_by_size"].items()]
        for key in ("h2d", "d2h"):
            rows += [(f"{key} pageable {int(k) // MiB} MiB", r[f"{key}_ms_by_size"][k], v, "GB/s")
                     for k, v in r[f"{key}_gbps_by_size"].items() if int(k) != 256 * MiB]
    print(f"{'what':26} {'median ms':>10} {'rate':>10}")
    for name, ms, value, unit in rows:
        print(f"{name:26} {ms:10.4f} {value:10.1f} {unit}")


if __name__ == "__main__":
    main()
