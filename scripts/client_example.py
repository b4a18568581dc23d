#!/usr/bin/env python3
"""Posts a matrix product, a two-step pipeline, and a chain of jobs on a
stored tensor to `anycore serve` with the standard library only, and checks
each against NumPy.

Usage: client_example.py [URL]   (default http://127.0.0.1:7878)
"""
import io
import json
import os
import sys
import urllib.request

import numpy as np  # only to make data and check the answer

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7878"
# A service started with a token (serve --token-file) needs it on each call.
token = os.environ.get("ANYCORE_TOKEN", "").strip()
auth = {"Authorization": f"Bearer {token}"} if token else {}
rng = np.random.default_rng()
a = rng.standard_normal((64, 48), dtype=np.float32)
b = rng.standard_normal((48, 32), dtype=np.float32)

job = {
    "kernel": "matmul",
    "inputs": {
        "a": {"dtype": "f32", "shape": list(a.shape), "data": a.ravel().tolist()},
        "b": {"dtype": "f32", "shape": list(b.shape), "data": b.ravel().tolist()},
    },
    "outputs": "inline",
}


def post(path, body):
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **auth},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


result = post("/v1/jobs", job)

out = result["outputs"]["out"]
c = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
print(f"ran on {result['backend']} ({result['device']}): {result['placement_reason']}")
print(f"max |c - a @ b| = {np.abs(c - a @ b).max():.2e}")
assert np.allclose(c, a @ b, rtol=1e-4, atol=1e-4)
print("equal to NumPy's a @ b")

# A pipeline: z = 2x + y, then the histogram of z, as one request; only
# the outputs named under "outputs" come back.
x = rng.standard_normal(10_000, dtype=np.float32)
y = rng.standard_normal(10_000, dtype=np.float32)
pipeline = {
    "steps": [
        {"name": "z", "kernel": "axpy", "params": {"a": 2}, "inputs": {
            "x": {"dtype": "f32", "shape": [x.size], "data": x.tolist()},
            "y": {"dtype": "f32", "shape": [y.size], "data": y.tolist()}}},
        {"name": "counts", "kernel": "histogram", "params": {"bins": 8, "lo": -4, "hi": 4},
         "inputs": {"x": {"step": "z", "output": "out"}}},
    ],
    "outputs": {"counts": {"step": "counts", "output": "out"}},
}
result = post("/v1/pipelines", pipeline)
steps = ", ".join(f"{s['name']} {s['timings_ms']['total']:.2f} ms" for s in result["steps"])
print(f"pipeline ran on {result['backend']}: {steps}")
counts = result["outputs"]["counts"]["data"]
want, _ = np.histogram(np.float32(2) * x + y, 8, range=(-4, 4))
print(f"counts {counts}")
assert counts == want.tolist()
print("equal to NumPy's histogram of 2x + y")

# Data sent once, used many times: store x as .npy bytes, then chain jobs
# on it. A kept output stays where it was computed (in GPU memory when the
# job ran on the GPU) and comes back as {"tensor": ID}; a GET brings it home.
buffer = io.BytesIO()
np.save(buffer, x)
request = urllib.request.Request(f"{url}/v1/tensors", data=buffer.getvalue(),
                                 headers={"Content-Type": "application/octet-stream", **auth})
with urllib.request.urlopen(request) as response:
    x_id = json.load(response)["id"]
scaled = post("/v1/jobs", {"kernel": "axpy", "params": {"a": 3}, "keep": ["out"],
                           "inputs": {"x": {"tensor": x_id}, "y": {"tensor": x_id}}})
scaled_id = scaled["outputs"]["out"]["tensor"]
total = post("/v1/jobs", {"kernel": "reduce", "inputs": {"x": {"tensor": scaled_id}}})
moved = scaled["traffic"]["downloaded_bytes"] + total["traffic"]["downloaded_bytes"]
print(f"4x stored and summed on {total['backend']}: {moved} bytes came home")
with urllib.request.urlopen(urllib.request.Request(f"{url}/v1/tensors/{scaled_id}",
                                                   headers=auth)) as response:
    four_x = np.load(io.BytesIO(response.read()))
assert np.array_equal(four_x, np.float32(3) * x + x)
assert np.isclose(total["outputs"]["out"]["data"][0], four_x.sum(dtype=np.float64), rtol=1e-4)
print("the stored result is 3x + x, and its sum matches NumPy's")
