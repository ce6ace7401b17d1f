"""The examples run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dynlab

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_record_training(tmp_path):
    store = tmp_path / "recorded.zarr"
    done = subprocess.run([sys.executable, str(EXAMPLES / "record_training.py"), "--store",
                           str(store), "--steps", "40"], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "0.weight: relative weight change" in done.stdout
    run = dynlab.open_store(store).run("sgd-mlp")
    assert run.steps.tolist() == list(range(0, 41, 5))
    assert run.attrs == {"width": 32, "lr": 0.05}
    assert "train_loss" in run.metrics
