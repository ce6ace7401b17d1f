"""The CLI: a thin shell over the API. CliRunner for most, one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner
from conftest import mlp_state

import dynlab
from dynlab.cli import main


def _write_run(directory, rng, steps=(0, 1, 2)):
    directory.mkdir(parents=True)
    for s in steps:
        np.savez(directory / f"epoch_{s}.npz", **mlp_state(rng))
    (directory / "metrics.csv").write_text("step,val_loss\n" + "".join(f"{s},{1 / (s + 1)}\n"
                                                                    for s in steps))


def test_ingest_runs_info(tmp_path, rng):
    _write_run(tmp_path / "mlp", rng)
    store = str(tmp_path / "s.zarr")
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", str(tmp_path / "mlp"), "--store", store,
                                  "--attr", "width=16", "--attr", "lr=0.1", "--attr", "opt=adam"])
    assert result.exit_code == 0, result.output
    assert "run mlp: 3 added, 0 unchanged" in result.output
    run = dynlab.open_store(store).run("mlp")
    assert run.attrs == {"width": 16, "lr": 0.1, "opt": "adam"}
    again = runner.invoke(main, ["ingest", str(tmp_path / "mlp"), "--store", store])
    assert "0 added, 3 unchanged" in again.output

    table = runner.invoke(main, ["runs", "--store", store])
    assert table.exit_code == 0 and "mlp" in table.output and "width=16" in table.output
    rows = json.loads(runner.invoke(main, ["runs", "--store", store, "--json"]).output)
    assert rows[0]["checkpoints"] == 3 and rows[0]["last_step"] == 2

    info = runner.invoke(main, ["info", "mlp", "--store", store])
    assert info.exit_code == 0 and "layers.0.weight" in info.output and "val_loss" in info.output
    doc = json.loads(runner.invoke(main, ["info", "mlp", "--store", store, "--json"]).output)
    assert doc["tensors"][0] == {"name": "layers.0.weight", "shape": [16, 8], "dtype": "float32",
                                 "source_dtype": "float32"}


def test_store_from_environment(tmp_path, rng, monkeypatch):
    _write_run(tmp_path / "r", rng, steps=(0,))
    monkeypatch.setenv("DYNLAB_STORE", str(tmp_path / "env.zarr"))
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert dynlab.open_store(tmp_path / "env.zarr").runs == ["r"]


def test_user_errors_are_one_line(tmp_path, rng):
    runner = CliRunner()
    cases = [
        (["ingest", str(tmp_path / "missing")], "missing: no such file or directory"),
        (["runs", "--store", str(tmp_path / "none.zarr")], "no dynlab store"),
        (["info", "x", "--store", str(tmp_path / "none.zarr")], "no dynlab store"),
        (["ingest", str(tmp_path), "--attr", "novalue"], "expected key=value"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_real_subprocess(tmp_path, rng):
    _write_run(tmp_path / "run1", rng)
    store = tmp_path / "s.zarr"
    cmd = [sys.executable, "-m", "dynlab", "ingest", str(tmp_path / "run1"), "--store", str(store)]
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "run run1: 3 added" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "dynlab", "info", "nope", "--store", str(store)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"dynlab: error: {store}: no run named 'nope'; runs: run1"
