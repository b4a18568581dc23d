#!/usr/bin/env python3
"""Checks `anycore run` against NumPy on fresh random data, per backend.

Usage: numpy_check.py ANYCORE_BINARY [--gpu]

With --gpu the GPU backend is checked too (software adapters allowed).
Every check of a kernel that streams, on inputs past 1 MiB, runs a second
time with `--memory-budget 1M`: a chunk at a time, against the same NumPy.
Prints one line per check and a closing 'N passed, N failed' line; exits 1
if any check failed.
"""
import json
from itertools import chain
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


# A budget that makes every input past 1 MiB stream.
STREAM_BUDGET = "1M"


def streams(kernel, inputs, params):
    """Whether a check runs in chunks under STREAM_BUDGET: a kernel that
    streams (histogram only with an explicit range) on more than 1 MiB."""
    kernels = {"axpy", "map", "reduce", "scan"} | ({"histogram"} if "lo" in params else set())
    return kernel in kernels and sum(a.nbytes for a in inputs.values()) > 1 << 20


def run(binary, kernel, backend, inputs, params, outdir, outputs=("out",), budget=None):
    """Runs a kernel; returns its one output, or a dict of several. With a
    budget, it must have run in more than one chunk."""
    args = [binary, "run", kernel, "--json", "--backend", backend]
    if budget:
        args += ["--memory-budget", budget]
    for name in outputs:
        args += ["-o", f"{name}={outdir / ('out-' + name + '.npy')}"]
    if backend == "gpu":
        args.append("--allow-software-gpu")
    for name, array in inputs.items():
        path = outdir / f"{name}.npy"
        np.save(path, array)
        args += ["-i", f"{name}={path}"]
    for name, value in params.items():
        args += ["-p", f"{name}={value}"]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr.strip()}")
    report = json.loads(proc.stdout)
    if report["backend"] != backend:
        raise AssertionError(f"ran on {report['backend']}, not {backend}")
    if budget and report.get("stream", {}).get("chunks", 0) < 2:
        raise AssertionError(f"did not run in chunks under --memory-budget {budget}")
    got = {name: np.load(outdir / f"out-{name}.npy") for name in outputs}
    return got["out"] if tuple(outputs) == ("out",) else got


def order_bits(keys):
    """Keys as uint32 that sort as unsigned integers in the kernel's order:
    f32 in IEEE total order (-NaN < -inf < ... < -0 < +0 < ... < +NaN)."""
    if keys.dtype == np.uint32:
        return keys
    if keys.dtype == np.int32:
        return keys.view(np.uint32) ^ np.uint32(1 << 31)
    b = keys.view(np.uint32)
    return np.where(b >> 31 == 1, ~b, b | np.uint32(1 << 31))


def rel_norm(got, want):
    want = np.asarray(want, dtype=np.float64)
    diff = np.linalg.norm(got.astype(np.float64) - want)
    scale = np.linalg.norm(want)
    return diff / scale if scale > 0 else diff


def mandelbrot(width, height, max_iter, x0, x1, y0, y1):
    """The catalog's definition, vectorised in float32."""
    f = np.float32
    cols = np.arange(width, dtype=f)
    rows = np.arange(height, dtype=f)
    px = f(x0) + (cols + f(0.5)) * (f(x1) - f(x0)) / f(width)
    py = f(y0) + (rows + f(0.5)) * (f(y1) - f(y0)) / f(height)
    pr, pi = np.meshgrid(px, py)
    zr = np.zeros_like(pr)
    zi = np.zeros_like(pr)
    counts = np.full(pr.shape, max_iter, dtype=np.uint32)
    alive = np.ones(pr.shape, dtype=bool)
    # Escaped points keep iterating and overflow to inf/NaN; their counts
    # are already fixed, so the warnings are noise.
    with np.errstate(all="ignore"):
        iterate(zr, zi, pr, pi, counts, alive, max_iter)
    return counts


def iterate(zr, zi, pr, pi, counts, alive, max_iter):
    f = np.float32
    for n in range(max_iter):
        zr2, zi2 = zr * zr, zi * zi
        escaped = alive & (zr2 + zi2 > f(4))
        counts[escaped] = n
        alive &= ~escaped
        zi = f(2) * zr * zi + pi
        zr = zr2 - zi2 + pr


def checks(rng):
    for m, k, n in [(1, 1, 1), (17, 33, 65), (513, 257, 129)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        want = a.astype(np.float64) @ b.astype(np.float64)

        def check(got, want=want, m=m, n=n, a=a, b=b):
            assert got.shape == (m, n) and got.dtype == np.float32, (got.shape, got.dtype)
            err = rel_norm(got, want)
            # A @ B in float32 is itself rounded: ours must be as close as NumPy's.
            bound = max(1e-6, 4 * rel_norm(a @ b, want))
            assert err <= bound, f"relative error {err:.2e} > {bound:.2e}"

        yield f"matmul {m}x{k}x{n}", "matmul", {"a": a, "b": b}, {}, check

    for n in [1, 257, 1_000_003]:
        x = rng.standard_normal(n, dtype=np.float32)
        y = rng.standard_normal(n, dtype=np.float32)
        alpha = np.float32(rng.uniform(-3, 3))

        def check(got, x=x, y=y, alpha=alpha):
            want = alpha * x + y
            assert got.dtype == np.float32 and got.shape == want.shape
            assert rel_norm(got, want) <= 1e-6, rel_norm(got, want)

        yield f"axpy n={n}", "axpy", {"x": x, "y": y}, {"a": repr(float(alpha))}, check

    for dtype in [np.float32, np.uint32, np.int32]:
        n = 1_000_003
        if dtype == np.float32:
            x = rng.standard_normal(n, dtype=np.float32)
        else:
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
        for op in ["sum", "min", "max"]:

            def check(got, x=x, op=op, dtype=dtype):
                assert got.shape == (1,) and got.dtype == dtype, (got.shape, got.dtype)
                if op == "sum" and dtype == np.float32:
                    want = np.sum(x, dtype=np.float64)
                    bound = 1e-5 * np.sum(np.abs(x), dtype=np.float64)
                    assert abs(float(got[0]) - want) <= bound, (got[0], want)
                elif op == "sum":
                    assert got[0] == np.sum(x, dtype=dtype), (got[0], np.sum(x, dtype=dtype))
                else:
                    want = getattr(np, op)(x)
                    assert got[0] == want, (got[0], want)

            yield f"reduce {op} {np.dtype(dtype).name}", "reduce", {"x": x}, {"op": op}, check

    for width, height in [(1, 1), (97, 61), (640, 480)]:
        params = dict(width=width, height=height, max_iter=int(rng.integers(20, 300)),
                      x0=-2.5, x1=1.0, y0=-1.25, y1=1.25)

        def check(got, params=params):
            want = mandelbrot(**params)
            assert got.shape == want.shape and got.dtype == np.uint32
            differing = np.count_nonzero(got != want)
            # Fused multiply-adds may move a few pixels on the set's boundary.
            assert differing * 50 <= got.size, f"{differing} of {got.size} pixels differ"

        yield f"mandelbrot {width}x{height}", "mandelbrot", {}, params, check

    # Sizes around the GPU's tiles (2048) and past one binding in chunked
    # runs; integer sums wrap.
    for n in [1, 2047, 2049, 1_048_579]:
        for dtype in [np.uint32, np.int32, np.float32]:
            if dtype == np.float32:
                x = rng.standard_normal(n, dtype=np.float32)
            else:
                info = np.iinfo(dtype)
                x = rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
            for inclusive in [False, True]:

                def check(got, x=x, inclusive=inclusive, dtype=dtype):
                    assert got.shape == x.shape and got.dtype == dtype, (got.shape, got.dtype)
                    if dtype == np.float32:
                        wide = np.cumsum(x, dtype=np.float64)
                        want = wide if inclusive else np.concatenate([[0.0], wide[:-1]])
                        scale = np.cumsum(np.abs(x), dtype=np.float64)
                        err = np.abs(got.astype(np.float64) - want)
                        assert np.all(err <= 1e-5 * scale + 1e-30), f"max error {np.max(err / (scale + 1e-30)):.2e}"
                    else:
                        want = np.cumsum(x, dtype=dtype)
                        if not inclusive:
                            want = np.concatenate([np.zeros(1, dtype), want[:-1]])
                        bad = np.flatnonzero(got != want)
                        assert bad.size == 0, f"{bad.size} differ, first at {bad[:1]}"

                name = f"scan n={n} {np.dtype(dtype).name} inclusive={inclusive}"
                yield name, "scan", {"x": x}, {"inclusive": str(inclusive).lower()}, check

    for n in [1, 2049, 1_000_003]:
        for dtype in [np.uint32, np.int32, np.float32]:
            if dtype == np.float32:
                keys = rng.standard_normal(n, dtype=np.float32)
                # Ties, signed zeros, infinities and NaN of both signs.
                for i, v in enumerate([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.5]):
                    keys[i::97] = v
            else:
                # A small range, so that stability matters.
                keys = rng.integers(-40, 40, size=n).astype(dtype)
            values = rng.integers(0, 2**32, size=n, dtype=np.uint32)
            order = np.argsort(order_bits(keys), kind="stable")
            if dtype == np.uint32:
                assert np.array_equal(keys[order], np.sort(keys, kind="stable"))

            def check(got, keys=keys, values=values, order=order):
                assert got["keys"].dtype == keys.dtype and got["values"].dtype == np.uint32
                assert np.array_equal(got["keys"].view(np.uint32), keys[order].view(np.uint32)), "keys"
                assert np.array_equal(got["values"], values[order]), "values"

            tag = f"n={n} {np.dtype(dtype).name}"
            yield (f"sort {tag} with values", "sort", {"keys": keys, "values": values}, {},
                   check, ("keys", "values"))

            def check(got, order=order):
                assert got["indices"].dtype == np.uint32
                assert np.array_equal(got["indices"], order), "argsort"

            yield (f"sort {tag} argsort", "sort", {"keys": keys}, {"indices": "true"},
                   check, ("keys", "indices"))

    for n in [0, 1, 1_000_003]:
        x = rng.standard_normal(n, dtype=np.float32)
        if n > 10:
            x[::1001] = np.nan
            x[1::1001] = 0.5  # an edge of the bins below
            x[2::1001] = np.inf
        for bins, lo, hi in [(1, -1.0, 1.0), (37, -1.0, 0.5), (5000, -2.3, 2.9), (999, -3e38, 3e38)]:

            def check(got, x=x, bins=bins, lo=lo, hi=hi):
                want, _ = np.histogram(x, bins, range=(lo, hi))
                assert got.dtype == np.uint32 and got.shape == (bins,)
                bad = np.flatnonzero(got != want)
                assert bad.size == 0, f"{bad.size} bins differ, first {bad[:3]}"

            params = {"bins": bins, "lo": repr(lo), "hi": repr(hi)}
            yield f"histogram n={n} bins={bins}", "histogram", {"x": x}, params, check

        finite = rng.standard_normal(max(n, 1), dtype=np.float32)

        def check(got, x=finite):
            want, _ = np.histogram(x, 64)
            assert np.array_equal(got, want), "default range (x's minimum and maximum)"

        yield f"histogram n={finite.size} default range", "histogram", {"x": finite}, {"bins": 64}, check


def sprinkled(rng, shape):
    """Standard normal float32 with NaN, +-inf and +-0 sprinkled in."""
    x = rng.standard_normal(shape, dtype=np.float32)
    flat = x.reshape(-1)
    if flat.size > 20:
        for k, v in enumerate([np.nan, np.inf, -np.inf, 0.0, -0.0]):
            flat[k::97] = v
    return x


def f32(v):
    return np.float32(v)


# `map` expressions and NumPy's float32 ufuncs computing the same.
MAP_EXPRESSIONS = [
    ("x * 2 + sin(y)", lambda x, y, z: x * f32(2) + np.sin(y)),
    ("sqrt(x*x + y*y)", lambda x, y, z: np.sqrt(x * x + y * y)),
    ("x % y - y % 0.7 + z % -1.5", lambda x, y, z: np.remainder(x, y) - np.remainder(y, f32(0.7))
     + np.remainder(z, f32(-1.5))),
    ("where(x < y, cos(z), tan(x)) + (x != y)",
     lambda x, y, z: np.where(x < y, np.cos(z), np.tan(x)) + (x != y).astype(np.float32),
     # WGSL allows sin and cos an absolute error of 2^-11 (in [-pi, pi]),
     # and tan = sin/cos that error divided by cos: ~2^-11 (1 + tan^2).
     lambda x, y, z: np.where(x < y, 2.0**-11, 2.0**-11 * (1 + np.tan(x.astype(np.float64)) ** 2))),
    ("(x >= y) * 2 - (x <= z) + (y > z) - (x == y)",
     lambda x, y, z: (x >= y).astype(np.float32) * f32(2) - (x <= z) + (y > z).astype(np.float32)
     - (x == y)),
    ("-x ** 2 + pow(abs(y), z) + exp(x) - exp2(y)",
     lambda x, y, z: -(x ** f32(2)) + np.power(np.abs(y), z) + np.exp(x) - np.exp2(y)),
    ("log(x) + log2(y) + sqrt(z)", lambda x, y, z: np.log(x) + np.log2(y) + np.sqrt(z)),
    ("asin(x / 3) + acos(y / 3) + atan(z) + atan2(x, y)",
     lambda x, y, z: np.arcsin(x / f32(3)) + np.arccos(y / f32(3)) + np.arctan(z) + np.arctan2(x, y)),
    ("sinh(x) * cosh(y) - tanh(z * 30)", lambda x, y, z: np.sinh(x) * np.cosh(y) - np.tanh(z * f32(30))),
    ("floor(x * 10) + ceil(y * 10) + round(z * 10) + abs(x)",
     lambda x, y, z: np.floor(x * f32(10)) + np.ceil(y * f32(10)) + np.round(z * f32(10)) + np.abs(x)),
    ("min(x, y) + max(y, z) + clamp(x, -0.5, 0.5)",
     lambda x, y, z: np.minimum(x, y) + np.maximum(y, z) + np.clip(x, f32(-0.5), f32(0.5))),
    ("x * y + z / 3", None),  # y and z of one element, broadcast
]


def map_checks(rng):
    for expr, numpy, *gpu_error in MAP_EXPRESSIONS:
        for n in [1, 4097, 1_000_003]:
            x, y, z = (sprinkled(rng, n) for _ in range(3))
            if numpy is None:
                y, z = sprinkled(rng, 1), sprinkled(rng, ())
                want = x * y + z / f32(3)
            else:
                with np.errstate(all="ignore"):
                    want = numpy(x, y, z)
                    # What WGSL allows a GPU beyond rounding, per element.
                    allowed = gpu_error[0](x, y, z) if gpu_error else None
            assert want.dtype == np.float32, (expr, want.dtype)
            inputs = {k: v for k, v in {"x": x, "y": y, "z": z}.items() if k in expr}

            def check(got, want=want, backend=None, allowed=allowed if numpy else None):
                assert got.dtype == np.float32 and got.shape == want.shape, (got.dtype, got.shape)
                nan = np.isnan(want)
                assert np.array_equal(np.isnan(got), nan), f"NaN at {np.flatnonzero(np.isnan(got) != nan)[:5]}"
                inf = np.isinf(want)
                assert np.array_equal(got[inf], want[inf]), "infinities differ"
                fin = ~nan & ~inf
                err = np.abs(got[fin].astype(np.float64) - want[fin]) / np.maximum(1, np.abs(want[fin]))
                # NumPy's float32 functions and ours round differently by a
                # few ulp; GPUs' built-ins (exp, log, tan) are allowed more.
                bound = 2e-4 if backend == "gpu" else 1e-5
                if backend == "gpu" and allowed is not None:
                    scale = np.maximum(1, np.abs(want[fin]))
                    err = err / np.maximum(bound, allowed[fin] / scale) * bound
                assert err.size == 0 or err.max() <= bound, (
                    f"error {err.max():.2e} at {np.flatnonzero(fin)[err.argmax()]}")

            yield f"map n={n} {expr}", "map", inputs, {"expr": expr}, check


def image_checks(rng):
    """conv2d and blur against SciPy (as f64, per channel); u8 results as
    SciPy's rounded and clamped, within 1."""
    try:
        from scipy import ndimage
    except ImportError:
        print("skip conv2d and blur: no SciPy (scripts/install-deps.sh --numpy installs it)")
        return
    shapes = [(61, 47), (40, 33, 3), (9, 130, 4)]
    for shape in shapes:
        for dtype in (np.float32, np.uint8):
            if dtype == np.uint8:
                image = rng.integers(0, 256, shape, dtype=np.uint8)
            else:
                image = rng.uniform(0, 255, shape).astype(np.float32)
            wide = image.astype(np.float64)
            channels = shape[2] if len(shape) == 3 else 0

            def per_channel(f, wide=wide, channels=channels):
                if not channels:
                    return f(wide)
                return np.stack([f(wide[..., c]) for c in range(channels)], axis=-1)

            def expect(want, image=image):
                if image.dtype == np.uint8:
                    return np.clip(np.rint(want), 0, 255).astype(np.uint8)
                return want.astype(np.float32)

            tag = f"{'x'.join(map(str, shape))} {np.dtype(dtype).name}"
            for kh, kw in [(3, 3), (5, 5), (1, 7)]:
                kernel = rng.standard_normal((kh, kw)).astype(np.float32)
                if dtype == np.uint8:
                    kernel = np.abs(kernel) / np.abs(kernel).sum()
                want = expect(per_channel(lambda p, k=kernel: ndimage.correlate(
                    p, k.astype(np.float64), mode="nearest")))
                yield (f"conv2d {tag} kernel {kh}x{kw}", "conv2d", {"image": image, "kernel": kernel}, {},
                       image_check(want))
            for sigma in [0.5, 2.0, 5.0]:
                want = expect(per_channel(lambda p, s=sigma: ndimage.gaussian_filter(
                    p, s, mode="nearest", truncate=4.0)))
                yield f"blur {tag} sigma {sigma}", "blur", {"image": image}, {"sigma": sigma}, image_check(want)


def image_check(want):
    def check(got, want=want):
        assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.shape)
        if want.dtype == np.uint8:
            diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
            assert diff.max() <= 1, f"{np.count_nonzero(diff)} pixels differ, by up to {diff.max()}"
        else:
            err = rel_norm(got, want.astype(np.float64))
            assert err <= 1e-5, f"relative error {err:.2e}"
    return check


def image_refusals(binary, outdir):
    """Even kernels and wrong dtypes: exit 2, naming the problem."""
    np.save(outdir / "img.npy", np.ones((8, 8), dtype=np.float32))
    np.save(outdir / "imgi.npy", np.ones((8, 8), dtype=np.int32))
    np.save(outdir / "even.npy", np.ones((4, 3), dtype=np.float32))
    np.save(outdir / "k3.npy", np.ones((3, 3), dtype=np.float32))
    cases = [
        (["conv2d", "-i", "image=img.npy", "-i", "kernel=even.npy"], "sides must be odd"),
        (["conv2d", "-i", "image=imgi.npy", "-i", "kernel=k3.npy"], "must be u8 or f32"),
        (["blur", "-i", "image=imgi.npy", "-p", "sigma=2"], "must be u8 or f32"),
        (["blur", "-i", "image=img.npy", "-p", "sigma=-1"], "not above 0"),
    ]
    for args, needle in cases:
        full = [binary, "run"] + [a.replace("=", f"={outdir}/", 1) if a.endswith(".npy") else a
                                  for a in args] + ["-o", f"out={outdir / 'refused.npy'}"]
        proc = subprocess.run(full, capture_output=True, text=True)
        ok = proc.returncode == 2 and needle in proc.stderr
        yield f"{args[0]} refuses {' '.join(args[1:])}", ok, f"exit {proc.returncode}: {proc.stderr.strip()}"


def map_refusals(binary, outdir):
    """Bad expressions and inputs: exit 2, naming the problem."""
    x = np.ones(5, dtype=np.float32)
    np.save(outdir / "x.npy", x)
    np.save(outdir / "i.npy", x.astype(np.int32))
    cases = [
        ("x=x.npy", "x * 2 + q", "expr: unknown name 'q'", "column 9"),
        ("x=x.npy", "x +* 2", "unexpected '*'", "column 4"),
        ("x=x.npy", "sin(x, x)", "sin takes 1 argument", "column 1"),
        ("x=x.npy", "(x + 1", "is not closed", "column 7"),
        ("x=i.npy", "x + 1", "input 'x' of map is i32[5], but it must be f32", ""),
        ("x=x.npy", "x + y", "no input 'y' is given", ""),
    ]
    for given, expr, *needles in cases:
        name, path = given.split("=")
        args = [binary, "run", "map", "-i", f"{name}={outdir / path}", "-p", f"expr={expr}",
                "-o", f"out={outdir / 'refused.npy'}"]
        proc = subprocess.run(args, capture_output=True, text=True)
        ok = proc.returncode == 2 and all(n in proc.stderr for n in needles)
        yield f"map refuses {expr!r} ({given})", ok, f"exit {proc.returncode}: {proc.stderr.strip()}"


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary = sys.argv[1]
    backends = ["cpu"] + (["gpu"] if "--gpu" in sys.argv[2:] else [])
    rng = np.random.default_rng()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        outdir = Path(tmp)
        for name, kernel, inputs, params, check, *outputs in chain(checks(rng), map_checks(rng),
                                                                    image_checks(rng)):
            budgets = [None] + ([STREAM_BUDGET] if streams(kernel, inputs, params) else [])
            for backend in backends:
                for budget in budgets:
                    label = f"{backend} {name}" + (f" streamed in {budget}" if budget else "")
                    try:
                        got = run(binary, kernel, backend, inputs, params, outdir, *outputs,
                                  budget=budget)
                        if kernel == "map":
                            check(got, backend=backend)
                        else:
                            check(got)
                        passed += 1
                        print(f"ok   {label}")
                    except AssertionError as e:
                        failed += 1
                        print(f"FAIL {label}: {e}")
        for name, ok, why in chain(map_refusals(binary, outdir), image_refusals(binary, outdir)):
            passed += ok
            failed += not ok
            print(f"ok   {name}" if ok else f"FAIL {name}: {why}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
