#!/usr/bin/env python3
"""A first look at GPU and CPU times through `anycore run` on a real GPU,
with PyTorch (TF32 off) as a same-run reference where it is installed.

Usage: gpu_timing.py ANYCORE_BINARY

Each row is the median of 3 runs of the CLI's own `timings_ms` (pipeline
creation happens in the first call of each process, so `compute` includes
it once: these are end-to-end, cold-process figures, not `anycore bench`).
"""
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(binary, args):
    out = subprocess.run([binary, "run", *args, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{args}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def median_report(binary, args, reps=3):
    reports = [run(binary, args) for _ in range(reps)]
    keys = ["upload", "compute", "download", "total"]
    return {k: statistics.median(r["timings_ms"][k] for r in reports) for k in keys}, reports[0]


def torch_reference(n_mm, n_vec):
    try:
        import torch
    except ImportError:
        return {}
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"

    def timed(fn, reps=10):
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3

    a = torch.randn(n_mm, n_mm, device=dev)
    b = torch.randn(n_mm, n_mm, device=dev)
    x = torch.randn(n_vec, device=dev)
    y = torch.empty_like(x)
    return {
        "torch matmul ms": timed(lambda: torch.matmul(a, b)),
        "torch sum ms": timed(lambda: torch.sum(x)),
        "torch copy ms": timed(lambda: y.copy_(x)),
    }


def main():
    binary = sys.argv[1]
    n_mm, n_vec = 4096, 1 << 26
    rng = np.random.default_rng()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        np.save(d / "a.npy", rng.standard_normal((n_mm, n_mm), dtype=np.float32))
        np.save(d / "b.npy", rng.standard_normal((n_mm, n_mm), dtype=np.float32))
        np.save(d / "x.npy", rng.standard_normal(n_vec, dtype=np.float32))
        np.save(d / "y.npy", rng.standard_normal(n_vec, dtype=np.float32))
        jobs = {
            f"matmul {n_mm}^3": (["matmul", "-i", f"a={d}/a.npy", "-i", f"b={d}/b.npy"], 2 * n_mm**3 / 1e9, "GFLOP/s"),
            f"axpy 2^26": (["axpy", "-i", f"x={d}/x.npy", "-i", f"y={d}/y.npy", "-p", "a=2"], 12 * n_vec / 1e9, "GB/s"),
            f"reduce sum 2^26": (["reduce", "-i", f"x={d}/x.npy"], 4 * n_vec / 1e9, "GB/s"),
            "mandelbrot 4096^2": (["mandelbrot", "-p", "width=4096", "-p", "height=4096"], 4096 * 4096 / 1e6, "Mpixel/s"),
        }
        print(f"{'job':22} {'backend':8} {'upload':>9} {'compute':>9} {'download':>9} {'total':>9}  rate (compute)")
        for name, (args, work, unit) in jobs.items():
            for backend in ["gpu", "cpu"]:
                try:
                    t, rep = median_report(binary, args + ["--backend", backend])
                except RuntimeError as e:
                    print(f"{name:22} {backend:8} failed: {e}")
                    continue
                rate = work / (t["compute"] / 1e3)
                print(f"{name:22} {backend:8} {t['upload']:9.2f} {t['compute']:9.2f} {t['download']:9.2f} {t['total']:9.2f}  {rate:10.1f} {unit}   [{rep['device']}]")
    for k, v in torch_reference(n_mm, n_vec).items():
        print(f"{k:22} {v:9.3f}")


if __name__ == "__main__":
    main()
