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


def _recorded_store(tmp_path, rng, runs=("r1", "r2"), steps=4):
    store = tmp_path / "an.zarr"
    for name in runs:
        with dynlab.Recorder(store, name, attrs={"width": 16}) as rec:
            for step in range(steps):
                rec.log(step, mlp_state(rng), val_loss=1.0 / (step + 1))
    return str(store)


def test_analyzers_run_results(tmp_path, rng):
    store = _recorded_store(tmp_path, rng)
    runner = CliRunner()
    listing = runner.invoke(main, ["analyzers"])
    assert listing.exit_code == 0 and "weight-change" in listing.output and "k_max" in listing.output
    assert any(a["name"] == "weight-change"
               for a in json.loads(runner.invoke(main, ["analyzers", "--json"]).output))

    first = runner.invoke(main, ["run", "weight-change", "--store", store, "-p", "k_max=3"])
    assert first.exit_code == 0, first.output
    assert "weight-change r1: computed" in first.output
    again = runner.invoke(main, ["run", "weight-change", "--store", store, "-p", "k_max=3",
                                 "--run", "r1"])
    assert "weight-change r1: cached" in again.output and "r2" not in again.output
    forced = runner.invoke(main, ["run", "weight-change", "--store", store, "-p", "k_max=3",
                                  "--run", "r1", "--force"])
    assert "weight-change r1: computed" in forced.output

    stored = dynlab.open_store(store).result("weight-change", "r1")
    as_json = runner.invoke(main, ["results", "weight-change", "--store", store, "--run", "r1",
                                   "--format", "json"])
    assert json.loads(as_json.output) == json.loads(json.dumps(stored.to_dict(data="list"),
                                                               default=str))
    csv = runner.invoke(main, ["results", "weight-change", "--store", store, "--run", "r1",
                               "--format", "csv"]).output
    assert "step,layer,rwc" in csv.splitlines() and "k,inertia" in csv.splitlines()
    table = runner.invoke(main, ["results", "weight-change", "--store", store])
    assert table.exit_code == 0 and "rwc" in table.output


def test_run_errors_are_one_line(tmp_path, rng):
    store = _recorded_store(tmp_path, rng, runs=("r1",))
    runner = CliRunner()
    cases = [
        (["run", "nope", "--store", store], "unknown analyzer 'nope'; available: "),
        (["run", "weight-change", "--store", store, "-p", "k_maxx=2"],
         "no analyzer being run has a parameter 'k_maxx'"),
        (["run", "weight-change", "--store", store, "-p", "weight-change.k_max=0"],
         "parameter 'k_max' must be int in [1, 20]"),
        (["run", "weight-change", "--store", store, "-p", "k_max=2.5"], "must be an int"),
        (["run", "weight-change", "--store", store, "--run", "zz"], "no run named 'zz'"),
        (["results", "weight-change", "--store", store], "no result of 'weight-change'"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_plot_a_stored_result(tmp_path, rng):
    """``dynlab plot``: a PNG of a stored result (all runs, or some), one-line errors otherwise."""
    store = _recorded_store(tmp_path, rng)
    runner = CliRunner()
    missing = runner.invoke(main, ["plot", "weight-change", "--store", store])
    assert missing.exit_code == 1
    assert missing.output.strip().endswith(
        "no result of 'weight-change' to plot (run: dynlab run weight-change)")
    assert runner.invoke(main, ["run", "weight-change", "--store", store, "-p", "k_max=3"]).exit_code == 0
    out = tmp_path / "wc.png"
    made = runner.invoke(main, ["plot", "weight-change", "--store", store, "-o", str(out)])
    assert made.exit_code == 0, made.output
    assert out.stat().st_size > 1000 and f"wrote {out}" in made.output
    one = runner.invoke(main, ["plot", "weight-change", "--store", store, "-r", "r2", "-r", "zz",
                               "-o", str(tmp_path / "x.png")])
    assert one.exit_code == 1 and "no result of 'weight-change' for zz (it has: r1, r2)" in one.output
    assert len(one.output.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()


def test_plot_to_an_unwritable_path_is_one_line(tmp_path, rng):
    """A missing directory or a format matplotlib cannot write: one line naming the file."""
    store = _recorded_store(tmp_path, rng)
    runner = CliRunner()
    assert runner.invoke(main, ["run", "weight-change", "--store", store, "-p", "k_max=3"]).exit_code == 0
    for out, why in ((tmp_path / "no" / "dir" / "wc.png", "No such file or directory"),
                     (tmp_path / "wc.txt", "Format 'txt' is not supported")):
        bad = runner.invoke(main, ["plot", "weight-change", "--store", store, "-o", str(out)])
        assert bad.exit_code == 1, bad.output
        assert bad.output.startswith(f"dynlab: error: {out}: cannot write the figure"), bad.output
        assert why in bad.output and len(bad.output.strip().splitlines()) == 1, bad.output
        assert not out.exists()


def test_info_shows_the_probe_data(tmp_path, rng):
    store = tmp_path / "p.zarr"
    layers = {"fc": {"kind": "linear", "weight": "fc.weight", "bias": None, "output": "softmax"}}
    with dynlab.Recorder(store, "r") as rec:
        rec.set_probe_layers(layers)
        for step in range(3):
            p = rng.dirichlet(np.ones(4), size=5)
            acts = {"fc": rng.standard_normal((5, 7)).astype(np.float32)} if step else None
            rec.log(step, {"fc.weight": rng.standard_normal((4, 7))}, predictions=p, activations=acts)
    runner = CliRunner()
    info = json.loads(runner.invoke(main, ["info", "r", "--store", str(store), "--json"]).output)
    assert info["probe"] == {
        "predictions": {"samples": 5, "classes": 4, "dtype": "float32", "steps": 3},
        "labels": False, "activations": {"fc": {"width": 7, "steps": 2}}, "layers": layers}
    text = runner.invoke(main, ["info", "r", "--store", str(store)]).output
    assert "probe predictions: 5 samples × 4 classes (float32) at 3 of 3 steps" in text
    assert "fc (softmax): 7 × 2" in text
