"""Prequential code length and information transfer: dynlab.transfer, Recorder.log_block and the
``info-transfer`` analyzer (METHODS.md §7)."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dynlab
from dynlab.analyzers import AnalyzerInputError
from dynlab.analyzers.info_transfer import InfoTransfer
from dynlab.errors import CheckpointError, DynlabError, DynlabWarning
from dynlab.testing import MemoryRun, check_analyzer
from dynlab.transfer import TransferInputError, prequential

EXAMPLE = Path(__file__).parents[1] / "examples" / "info_transfer" / "train_and_analyse.py"


def _weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"fc.weight": rng.standard_normal((3, 4)).astype(np.float32),
            "fc.bias": rng.standard_normal(3).astype(np.float32)}


def _run(sizes, bits, *, extra_steps=(), attrs=None, name="preq") -> MemoryRun:
    """A MemoryRun with blocks at steps 0, 10, 20, … and block-free steps ``extra_steps``."""
    block_steps = [10 * i for i in range(len(sizes))]
    steps = sorted(set(block_steps) | set(extra_steps))
    size_col = np.full(len(steps), np.nan)
    bits_col = np.full(len(steps), np.nan)
    for s, n, b in zip(block_steps, sizes, bits, strict=True):
        size_col[steps.index(s)], bits_col[steps.index(s)] = n, b
    rng = np.random.default_rng(0)
    tensors = {"fc.weight": rng.standard_normal((len(steps), 3, 4))}
    metrics = {"preq_block_size": size_col, "preq_block_bits": bits_col,
               "train_loss": rng.random(len(steps))}
    return MemoryRun(name, steps, tensors, metrics, {"n_classes": 10} if attrs is None else attrs)


def _block_sums(p: np.ndarray, y: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Σ −log₂ p(y|x) of each block (vectorised; the reference below loops)."""
    nll = -np.log2(p[np.arange(len(y)), y])
    return np.add.reduceat(nll, np.concatenate([[0], np.cumsum(sizes)[:-1]]))


# ------------------------------------------------------------------ analytic cases


@pytest.mark.parametrize("n_classes", [2, 3, 10, 1000])
def test_a_model_that_knows_the_labels_transfers_the_most(n_classes):
    sizes = [10, 20, 40, 80]
    p = prequential(sizes, [np.nan, 0.0, 0.0, 0.0], n_classes)
    log2c = math.log2(n_classes)
    assert p.total_preq == pytest.approx(10 * log2c, rel=1e-12)  # only the first block costs
    assert p.total_uniform == pytest.approx(150 * log2c, rel=1e-12)
    assert p.total_it == pytest.approx(140 * log2c, rel=1e-12)
    assert p.total_it == pytest.approx(p.max_it, rel=1e-12)
    np.testing.assert_allclose(p.l_it, np.array([0, 20, 60, 140]) * log2c, rtol=1e-12)
    assert p.per_sample()["l_it"] == pytest.approx(140 / 150 * log2c, rel=1e-12)


@pytest.mark.parametrize("n_classes", [2, 10, 37])
def test_a_model_that_learns_nothing_transfers_nothing(n_classes):
    sizes = np.array([5, 7, 11, 200])
    bits = sizes * math.log2(n_classes)
    bits[0] = 1e6  # the first block's recorded value is not part of the code
    p = prequential(sizes, bits, n_classes)
    np.testing.assert_allclose(p.l_it, 0.0, atol=1e-9)
    np.testing.assert_allclose(p.bits_per_sample, math.log2(n_classes), rtol=1e-12)
    assert p.total_preq == pytest.approx(p.total_uniform, rel=1e-12)


def test_worse_than_uniform_gives_negative_transfer():
    p = prequential([4, 4], [np.nan, 4 * 5.0], 4)  # 5 bits per sample where uniform costs 2
    assert p.total_it == pytest.approx(4 * 2.0 - 20.0)
    assert p.total_it < 0


def test_one_block_is_all_uniform():
    p = prequential([7], [np.nan], 3)
    assert p.total_preq == pytest.approx(7 * math.log2(3))
    assert p.total_it == 0.0 and p.max_it == 0.0


# ------------------------------------------------------------------ brute force and peer


def test_per_block_sums_against_a_sample_by_sample_loop():
    rng = np.random.default_rng(1)
    n_classes, sizes = 5, [3, 6, 12, 24, 9]
    n = sum(sizes)
    probs = rng.dirichlet(np.ones(n_classes), size=n)
    y = rng.integers(0, n_classes, size=n)
    p = prequential(sizes, _block_sums(probs, y, sizes), n_classes)
    # the definition, one sample at a time: the first block uniform, later ones −log₂ p(y|x)
    preq, uniform, boundaries, i = 0.0, 0.0, set(np.cumsum(sizes).tolist()), 0
    cumulative = []
    for i in range(n):
        preq += math.log2(n_classes) if i < sizes[0] else -math.log2(probs[i, y[i]])
        uniform += math.log2(n_classes)
        if i + 1 in boundaries:
            cumulative.append((preq, uniform))
    np.testing.assert_allclose(p.l_preq, [c[0] for c in cumulative], rtol=1e-12)
    np.testing.assert_allclose(p.l_uniform, [c[1] for c in cumulative], rtol=1e-12)
    np.testing.assert_allclose(p.l_it, [c[1] - c[0] for c in cumulative], rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(p.samples, np.cumsum(sizes))


def test_block_bits_agree_with_sklearn_log_loss():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 4, size=50)
    ours = _block_sums(probs, y, [50])[0]
    # sklearn: the summed cross-entropy in nats; / ln 2 gives bits (rtol: float64 rounding)
    theirs = log_loss(y, probs, normalize=False, labels=range(4)) / math.log(2)
    assert ours == pytest.approx(theirs, rel=1e-10)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 500), min_size=1, max_size=12),
       frac=st.lists(st.floats(0.0, 3.0), min_size=12, max_size=12),
       n_classes=st.integers(2, 100))
def test_properties(sizes, frac, n_classes):
    log2c = math.log2(n_classes)
    bits = np.array(sizes, dtype=float) * log2c * np.array(frac[:len(sizes)])
    p = prequential(sizes, bits, n_classes)
    np.testing.assert_allclose(p.l_preq + p.l_it, p.l_uniform, rtol=1e-12)
    assert p.total_it <= p.max_it + 1e-9 * p.total_uniform
    expected = sum(n * log2c - b for n, b in zip(sizes[1:], bits[1:], strict=True))
    assert p.total_it == pytest.approx(expected, rel=1e-9, abs=1e-9 * p.total_uniform)
    # a further block that costs exactly the uniform code changes nothing
    more = prequential([*sizes, 17], [*bits, 17 * log2c], n_classes)
    assert more.total_it == pytest.approx(p.total_it, rel=1e-9, abs=1e-9 * more.total_uniform)


@pytest.mark.parametrize(("sizes", "bits", "n_classes", "match"), [
    ([10, 20], [0.0, 5.0], 1, "n_classes"),
    ([10, 20], [0.0, 5.0], True, "n_classes"),
    ([10, 20], [0.0, 5.0], 2.0, "n_classes"),
    ([10, 20], [0.0, -1.0], 10, "finite and ≥ 0"),
    ([10, 20], [0.0, np.nan], 10, "finite and ≥ 0"),
    ([10, 20], [0.0, np.inf], 10, "finite and ≥ 0"),
    ([10, 0], [0.0, 5.0], 10, "positive integers"),
    ([10, 2.5], [0.0, 5.0], 10, "positive integers"),
    ([10, -3], [0.0, 5.0], 10, "positive integers"),
    ([], [], 10, "at least one block"),
    ([[10, 20]], [[0.0, 5.0]], 10, "1-D"),
    ([10, 20], [0.0], 10, "one value per block"),
    (["a", "b"], [0.0, 5.0], 10, "numbers"),
])
def test_invalid_inputs(sizes, bits, n_classes, match):
    with pytest.raises(TransferInputError, match=match):
        prequential(sizes, bits, n_classes)


def test_results_are_read_only():
    p = prequential([1, 2], [0.0, 1.0], 2)
    with pytest.raises(ValueError):
        p.l_it[0] = 1.0


# ------------------------------------------------------------------ the analyzer


def test_conforms_to_the_contract():
    view = _run([10, 20, 40], [30.0, 12.0, 5.0], extra_steps=(5, 15))
    check_analyzer(InfoTransfer, view=view)
    check_analyzer("info-transfer", view=view)


def test_analyzer_equals_the_math_module():
    sizes, bits = [10, 20, 40, 80], [31.0, 40.0, 25.5, 7.25]
    view = _run(sizes, bits, extra_steps=(3, 5, 25, 41))  # steps without a block: NaN rows
    ds = InfoTransfer().compute(view)
    p = prequential(sizes, bits, 10)
    assert ds["step"].values.tolist() == [0, 10, 20, 30]
    for var, ref in [("block_size", p.block_sizes), ("block_bits", p.block_bits),
                     ("code_bits", p.code_bits), ("bits_per_sample", p.bits_per_sample),
                     ("samples", p.samples), ("l_preq", p.l_preq), ("l_uniform", p.l_uniform),
                     ("l_it", p.l_it)]:
        np.testing.assert_array_equal(ds[var].values, ref, err_msg=var)
    a = ds.attrs
    assert a["L_IT"] == p.total_it and a["L_preq"] == p.total_preq
    assert a["L_uniform"] == p.total_uniform and a["L_IT_max"] == p.max_it
    assert a["L_IT_per_sample"] == pytest.approx(p.total_it / 150)
    assert a["block_schedule"] == [[0, 10], [10, 20], [20, 40], [30, 80]]
    assert a["n_classes"] == 10 and a["n_blocks"] == 4 and a["n_samples"] == 150


def test_n_classes_parameter_overrides_the_attr():
    view = _run([10, 20], [30.0, 12.0], attrs={"n_classes": 10})
    ds = InfoTransfer(n_classes=4).compute(view)
    assert ds.attrs["n_classes"] == 4
    assert ds.attrs["L_uniform"] == pytest.approx(30 * 2.0)
    no_attr = _run([10, 20], [30.0, 12.0], attrs={})
    assert InfoTransfer(n_classes=4).compute(no_attr).attrs["L_IT"] == pytest.approx(20 * 2 - 12)


@pytest.mark.parametrize(("view", "params", "match"), [
    (_run([10, 20], [3.0, 1.0], attrs={}), {}, "number of classes is unknown"),
    (_run([10, 20], [3.0, 1.0], attrs={"n_classes": 1}), {}, "run attr n_classes must be"),
    (_run([10, 20], [3.0, 1.0], attrs={"n_classes": "ten"}), {}, "run attr n_classes must be"),
    (_run([10, 20], [3.0, 1.0]), {"n_classes": 1}, "n_classes must be an integer"),
    (_run([10, 20], [3.0, -1.0]), {}, "finite and ≥ 0"),
    (MemoryRun("plain", [0, 1], {"w": np.zeros((2, 3))}, {"train_loss": [1.0, 0.5]},
               {"n_classes": 10}), {}, "no metric preq_block_size"),
    (MemoryRun("half", [0, 1], {"w": np.zeros((2, 3))},
               {"preq_block_size": [10, np.nan], "preq_block_bits": [3.0, 4.0]},
               {"n_classes": 10}), {}, "step 1 has preq_block_bits but no preq_block_size"),
    (MemoryRun("none", [0, 1], {"w": np.zeros((2, 3))},
               {"preq_block_size": [np.nan, np.nan], "preq_block_bits": [np.nan, np.nan]},
               {"n_classes": 10}), {}, "no step has a data block"),
])
def test_analyzer_errors_name_the_run(view, params, match):
    with pytest.raises(AnalyzerInputError, match=match) as info:
        InfoTransfer(**params).compute(view)
    assert f"run '{view.name}'" in str(info.value)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ Recorder.log_block


def test_log_block_round_trip_through_a_store(store_path):
    rng = np.random.default_rng(0)
    with dynlab.Recorder(store_path, "preq", attrs={"n_classes": 10}) as rec:
        rec.log_block(0, 10, 33.0)
        assert rec.pending_block == (0, 10, 33.0)
        rec.log(0, _weights(rng), train_loss=2.0)
        assert rec.pending_block is None
        rec.log(5, _weights(rng), train_loss=1.5)  # a step without a block
        rec.log_block(10, 20, np.float32(12.5))
        rec.log(7, _weights(rng))  # earlier logs may come between a block and its step
        rec.log(10, _weights(rng), train_loss=1.0)
    run = dynlab.open_store(store_path).run("preq")
    assert run.steps.tolist() == [0, 5, 7, 10]
    np.testing.assert_array_equal(run.metrics["preq_block_size"], [10, np.nan, np.nan, 20])
    np.testing.assert_array_equal(run.metrics["preq_block_bits"], [33.0, np.nan, np.nan, 12.5])
    np.testing.assert_array_equal(run.metrics["train_loss"], [2.0, 1.5, np.nan, 1.0])

    report = dynlab.run(store_path, ["info-transfer"], runs=["preq"], backend="numpy")
    assert [o.status for o in report.outcomes] == ["computed"], report.outcomes
    ds = dynlab.results(store_path, "info-transfer", "preq")
    assert ds["step"].values.tolist() == [0, 10]
    assert ds.attrs["L_IT"] == pytest.approx(20 * math.log2(10) - 12.5)


def test_log_block_accepts_torch_scalars(store_path):
    torch = pytest.importorskip("torch")
    with dynlab.Recorder(store_path, "t") as rec:
        rec.log_block(0, torch.tensor(8), torch.tensor(3.25))
        rec.log(0, _weights(np.random.default_rng(0)))
    run = dynlab.open_store(store_path).run("t")
    assert run.metrics["preq_block_size"].tolist() == [8.0]
    assert run.metrics["preq_block_bits"].tolist() == [3.25]


@pytest.mark.parametrize(("size", "bits", "match"), [
    (10, -0.5, "finite and ≥ 0"),
    (10, float("nan"), "finite and ≥ 0"),
    (10, float("inf"), "finite and ≥ 0"),
    (10, "many", "must be a number"),
    (0, 1.0, "positive integer"),
    (-4, 1.0, "positive integer"),
    (2.5, 1.0, "positive integer"),
    (True, 1.0, "positive integer"),
    ("ten", 1.0, "positive integer"),
])
def test_log_block_rejects_bad_values(store_path, size, bits, match):
    with dynlab.Recorder(store_path, "bad") as rec:
        with pytest.raises(CheckpointError, match=match):
            rec.log_block(0, size, bits)
        assert rec.pending_block is None


def test_log_block_order_errors(store_path):
    rng = np.random.default_rng(0)
    with dynlab.Recorder(store_path, "order") as rec:
        rec.log_block(0, 10, 30.0)
        with pytest.raises(CheckpointError, match="step 0 already has a block"):
            rec.log_block(0, 10, 31.0)
        with pytest.raises(CheckpointError, match="block of step 0 is still waiting"):
            rec.log_block(1, 10, 31.0)
        with pytest.raises(CheckpointError, match="block of step 0 was never logged"):
            rec.log(1, _weights(rng))
        with pytest.raises(CheckpointError, match="preq_block_bits is given and also"):
            rec.log(0, _weights(rng), preq_block_bits=1.0)
        rec.log(0, _weights(rng))  # the block is still there after the failed logs
        with pytest.raises(CheckpointError, match="step 0 is already committed"):
            rec.log_block(0, 10, 1.0)
        rec.log(3, _weights(rng))
        with pytest.raises(CheckpointError, match="earlier than the last step 3"):
            rec.log_block(2, 10, 1.0)
    with pytest.raises(CheckpointError, match="closed"):
        rec.log_block(4, 10, 1.0)
    run = dynlab.open_store(store_path).run("order")
    assert run.steps.tolist() == [0, 3]
    np.testing.assert_array_equal(run.metrics["preq_block_bits"], [30.0, np.nan])


def test_a_block_still_waiting_at_close_is_a_warning(store_path):
    """An evaluation-only last block (never followed by its log) would silently shorten L_preq."""
    rng = np.random.default_rng(0)
    rec = dynlab.Recorder(store_path, "tail", attrs={"n_classes": 10})
    rec.log_block(0, 10, 30.0)
    rec.log(0, _weights(rng))
    rec.log_block(1, 20, 12.5)
    with pytest.warns(DynlabWarning, match=r"run 'tail': the block of step 1 \(20 samples, 12.5 "
                                           r"bits\) was never logged with log\(1, \.\.\.\)"):
        rec.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with dynlab.Recorder(store_path, "fine") as done:  # nothing waiting: no warning
            done.log_block(0, 10, 30.0)
            done.log(0, _weights(rng))


def test_errors_are_dynlab_errors():
    assert issubclass(TransferInputError, DynlabError)
    assert issubclass(AnalyzerInputError, DynlabError)


# ------------------------------------------------------------------ the real thing


def test_doubling_schedule():
    from dynlab.demo._prequential import doubling_schedule

    assert doubling_schedule(1400, 10) == [10, 20, 40, 80, 160, 320, 770]  # a short tail joins
    assert doubling_schedule(1270, 10) == [10, 20, 40, 80, 160, 320, 640]
    assert doubling_schedule(1600, 10) == [10, 20, 40, 80, 160, 320, 640, 330]
    assert doubling_schedule(5, 5) == [5]


def test_example_transfers_with_true_labels_and_not_with_shuffled(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    store = tmp_path / "info.zarr"
    done = subprocess.run([sys.executable, str(EXAMPLE), "--store", str(store)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "digits: L_preq" in done.stdout and "digits-shuffled: L_preq" in done.stdout
    true = dynlab.results(store, "info-transfer", "digits")
    shuffled = dynlab.results(store, "info-transfer", "digits-shuffled")
    for ds in (true, shuffled):  # the schedule: doubling blocks, 1400 samples in all
        assert ds["block_size"].values.tolist() == [10, 20, 40, 80, 160, 320, 770]
        assert ds.attrs["n_classes"] == 10
    it, it_shuffled = true.attrs["L_IT"], shuffled.attrs["L_IT"]
    # learnable digits: most of the largest possible transfer ((1400 − 10)·log₂10 ≈ 4617 bits)
    assert it > 0.5 * true.attrs["L_IT_max"]
    # nothing to learn: ≈ 0 (the early-stopped net stays near uniform, slightly worse)
    assert abs(it_shuffled) < 0.1 * it
    assert it_shuffled < it
    # the recorded weights are there for the other analyzers: one checkpoint per block
    run = dynlab.open_store(store).run("digits")
    assert run.steps.tolist() == list(range(7))
    assert run.metrics["test_acc"][-1] > 0.9
