#!/usr/bin/env python3
"""Posts a matrix product to `anycore serve` with the standard library only,
and checks it against NumPy.

Usage: client_example.py [URL]   (default http://127.0.0.1:7878)
"""
import json
import sys
import urllib.request

import numpy as np  # only to make data and check the answer

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7878"
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
request = urllib.request.Request(
    f"{url}/v1/jobs",
    data=json.dumps(job).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request) as response:
    result = json.load(response)

out = result["outputs"]["out"]
c = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
print(f"ran on {result['backend']} ({result['device']}): {result['placement_reason']}")
print(f"max |c - a @ b| = {np.abs(c - a @ b).max():.2e}")
assert np.allclose(c, a @ b, rtol=1e-4, atol=1e-4)
print("equal to NumPy's a @ b")
