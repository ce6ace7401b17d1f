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
    store = dynlab.open_store(out / "dynlab.zarr")
    assert store.runs == ["w16-s0"]
    run = store.run("w16-s0")
    assert run.steps.tolist() == list(range(11)) and {"val_loss", "train_acc"} <= set(run.metrics)
    for analyzer in ("weight-change", "fisher-velocity", "fisher-distance"):
        assert store.results[analyzer] == ["w16-s0"]
        assert (out / "plots" / f"{analyzer}.png").stat().st_size > 1000
    # a second demo into the same directory starts clean
    again = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
