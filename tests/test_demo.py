"""The demo, end to end, in its quick form (one small MLP, 10 epochs)."""

from __future__ import annotations

from click.testing import CliRunner

import dynlab
from dynlab.cli import main


def test_quick_demo(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "trained 1 MLPs" in result.output and "best val loss" in result.output
    assert "layer fluctuation" in result.output and "t* of L" in result.output
    assert "failed" not in result.output
    store = dynlab.open_store(out / "dynlab.zarr")
    assert store.runs == ["w16-s0"]
    run = store.run("w16-s0")
    assert run.steps.tolist() == list(range(11)) and {"val_loss", "train_acc"} <= set(run.metrics)
    for analyzer in ("weight-change", "fisher-velocity", "fisher-distance", "network", "transitions"):
        assert store.results[analyzer] == ["w16-s0"]
        assert (out / "plots" / f"{analyzer}.png").stat().st_size > 1000
    # a second demo into the same directory starts clean
    again = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output


def test_demo_across_widths_with_the_iris_replicas(tmp_path):
    """Two widths: the finite-size scaling fit runs; the Iris replica experiment runs; every
    figure is drawn."""
    from dynlab.demo import run_demo

    lines: list[str] = []
    out = run_demo(tmp_path / "demo", widths=(16, 32), seeds=(0,), epochs=12, echo=lines.append)
    text = "\n".join(lines)
    assert not out["failed"], out["failed"]
    assert "fss across widths" in text and "quality S" in text
    assert "lyapunov (replicas" in text and "η = 5" in text
    names = {p.name for p in out["plots"]}
    assert {"network.png", "transitions.png", "fss.png", "lyapunov.png",
            "fisher-velocity.png"} <= names
    assert all(p.stat().st_size > 1000 for p in out["plots"])
