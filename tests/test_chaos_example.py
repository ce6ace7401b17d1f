"""The chaos example (examples/chaos_iris) and the demo's small version separate the regimes:
regular training at a small learning rate (Λ ≈ 0 or below), chaotic at a large one (Λ > 0)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import dynlab

EXAMPLE = Path(__file__).parents[1] / "examples" / "chaos_iris" / "train_and_analyse.py"


def test_example_separates_regular_from_chaotic(tmp_path):
    store = tmp_path / "chaos.zarr"
    done = subprocess.run([sys.executable, str(EXAMPLE), "--store", str(store), "--lrs", "0.01,5",
                           "--iters", "100", "--replicas", "1", "--every", "4"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    found = dict(re.findall(r"lr=(\S+): Lambda=(\S+) per iteration", done.stdout))
    assert set(found) == {"0.01", "5"}, done.stdout
    assert abs(float(found["0.01"])) < 0.01  # regular: the perturbation neither grows nor dies
    assert float(found["5"]) > 0.1           # chaotic: ε = 1e-8 reaches the weights' size in ~100 steps
    assert "(regular)" in done.stdout and "(chaotic)" in done.stdout
    st = dynlab.open_store(store)
    run = st.run("iris-lr5-r1")
    assert run.attrs == {"group": "iris-lr5", "replica": 1, "lr": 5.0, "eps": 1e-8}
    assert run.steps.tolist() == list(range(0, 101, 4))
    ref = st.run("iris-lr5-r0")
    # the replica starts within ε of the reference, weight by weight, in float64
    for t in ref.tensors:
        assert ref.read(t.name).dtype == np.float64
        gap = np.abs(ref.read(t.name, [0]) - run.read(t.name, [0]))
        assert 0 < gap.max() <= 1e-8


def test_demo_version(tmp_path):
    from dynlab.demo._chaos import run_chaos_demo

    out = run_chaos_demo(tmp_path / "demo.zarr", lrs=(0.01, 5.0), iters=100, every=4)
    small, large = out["per_lr"][0.01], out["per_lr"][5.0]
    assert abs(small["exponent"]) < 0.01 and large["exponent"] > 0.1 and large["accepted"]
    assert large["distance"][-1] > 1e3 * large["distance"][0]  # grew by orders of magnitude
    assert len(small["steps"]) == len(small["distance"]) and len(out["lines"]) == 3
