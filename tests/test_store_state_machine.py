"""The store against a model: a dict of committed checkpoints, under random operation sequences.

Rules: append (valid, and invalid ways that must fail with the model unchanged), replace, reopen,
reads of arbitrary step lists, and simulated crashes that stop an append before its commit, with
the rows written (or even ``step`` resized, leaving its sentinel) but never committed. Those
leftovers must stay invisible, after a reopen too, and be overwritten by the next append.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import dynlab
from dynlab.errors import CheckpointError, DuplicateContentWarning, NonFiniteWarning, StoreError
from dynlab.store import _layout as L
from dynlab.store._stats import tensor_stats

RUN = "r"
#: name → (shape, dtype), in source order. "w" is split into several chunks per row (the chunk
#: size is lowered for the machine's lifetime), so multi-chunk rows are read and written too.
SCHEMA: dict[str, tuple[tuple[int, ...], str]] = {
    "w": ((6, 5), "float32"),
    "b": ((5,), "float64"),
    "n": ((3,), "int64"),
    "s": ((), "float32"),
}
METRICS = ("loss", "acc")


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _make(seed: int, special: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in SCHEMA.items():
        if np.dtype(dtype).kind == "i":
            out[name] = rng.integers(-1000, 1000, size=shape).astype(dtype)
        else:
            out[name] = rng.standard_normal(shape).astype(dtype)
    if special:  # NaN/Inf/-0.0 must come back bit for bit (and warn once)
        out["w"].flat[:3] = [np.nan, -np.inf, -0.0]
    return out


def _drain(run) -> None:
    """Let row writes still in flight in the background (if the store has any) land on disk, as
    they must before the simulated crash: a dead process writes nothing later."""
    writes = getattr(run, "_writes", None)
    if writes is not None:
        writes.wait()


checkpoints = st.builds(_make, st.integers(0, 2**16), st.booleans())
metric_values = st.dictionaries(st.sampled_from(METRICS),
                                st.floats(allow_nan=False, allow_infinity=False), max_size=2)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._saved_chunk_bytes = L.CHUNK_BYTES
        L.CHUNK_BYTES = 2 * 5 * 4  # two rows of "w" per chunk: a row spans three chunks
        self.tmp = Path(tempfile.mkdtemp(prefix="dynlab-sm-"))
        self.path = self.tmp / "store.zarr"
        self.model: dict[int, dict[str, np.ndarray]] = {}  # step → tensors, steps in order
        self.metrics: dict[int, dict[str, float]] = {}

    def teardown(self):
        L.CHUNK_BYTES = self._saved_chunk_bytes
        shutil.rmtree(self.tmp, ignore_errors=True)

    @initialize()
    def create(self):
        self.run = dynlab.open_store(self.path, mode="a").create_run(RUN)

    # ------------------------------------------------------------------ helpers

    @property
    def steps(self) -> list[int]:
        return list(self.model)

    def _next_step(self, gap: int) -> int:
        return (self.steps[-1] if self.model else -1) + gap

    def _append(self, step: int, tensors, metrics):
        nonfinite = any(v.dtype.kind == "f" and not np.isfinite(v).all() for v in tensors.values())
        duplicate = any(all(_same_bits(old[k], tensors[k]) for k in SCHEMA)
                        for old in self.model.values())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.run.append(step, tensors, metrics)
        kinds = {w.category for w in caught}
        assert (NonFiniteWarning in kinds) == nonfinite
        assert (DuplicateContentWarning in kinds) == duplicate
        assert kinds <= {NonFiniteWarning, DuplicateContentWarning}, kinds
        self.model[step] = tensors
        self.metrics[step] = dict(metrics)

    def _reopen(self, mode="a"):
        return dynlab.open_store(self.path, mode=mode).run(RUN)

    def _check(self, run):
        """``run`` (freshly opened) shows exactly the model: every tensor, metric and hash row."""
        assert run.steps.tolist() == self.steps
        assert len(run) == len(self.model)
        assert len(run.hashes) == len(self.model)
        if not self.model:
            return
        assert [t.name for t in run.tensors] == list(SCHEMA)
        assert run.hashes.shape[1] == len(SCHEMA)
        for name in SCHEMA:  # one read per tensor covers every committed row
            assert _same_bits(run.read(name), np.stack([t[name] for t in self.model.values()]))
        metrics = run.metrics
        for name in metrics:  # NaN where a step has no value (also for leftover-only metrics)
            expected = [self.metrics[s].get(name, np.nan) for s in self.steps]
            np.testing.assert_array_equal(metrics[name], expected)
        for step, values in self.metrics.items():  # every recorded value is there
            for name, value in values.items():
                assert metrics[name][self.steps.index(step)] == value
        last = self.steps[-1]  # the row a leftover would sit next to
        stored = run.checkpoint(last)
        assert list(stored) == list(SCHEMA)
        assert all(_same_bits(stored[k], self.model[last][k]) for k in SCHEMA)
        assert run.same_content(last, self.model[last])
        stats = run.stats  # ingest-time statistics of exactly the committed rows, leftovers gone
        if stats is None:  # only when a tensor has no number at all at some step
            assert any(np.isnan(t[k]).all() for t in self.model.values() for k in SCHEMA
                       if t[k].dtype.kind == "f")
        else:
            for row, values in enumerate(self.model.values()):
                for i, name in enumerate(SCHEMA):
                    np.testing.assert_array_equal(stats[row, i], tensor_stats(values[name])[0])

    # ------------------------------------------------------------------ rules

    @rule(gap=st.integers(1, 5), tensors=checkpoints, metrics=metric_values)
    def append(self, gap, tensors, metrics):
        self._append(self._next_step(gap), tensors, metrics)

    @rule(gap=st.integers(1, 3), tensors=checkpoints, bad=st.sampled_from(list(SCHEMA)),
          how=st.sampled_from(["shape", "missing", "extra", "dtype"]))
    def append_invalid(self, gap, tensors, bad, how):
        if not self.model:  # the first checkpoint defines the schema: nothing to violate yet
            return
        tensors = dict(tensors)
        if how == "shape":
            tensors[bad] = np.zeros((*SCHEMA[bad][0], 2), dtype=SCHEMA[bad][1])
        elif how == "missing":
            del tensors[bad]
        elif how == "extra":
            tensors["extra"] = np.ones(2, dtype=np.float32)
        else:  # same shape, other kind: int where float is stored and vice versa
            shape, dtype = SCHEMA[bad]
            tensors[bad] = np.ones(shape, dtype=np.float64 if dtype.startswith("int") else np.int64)
        # invalid tensors come last, so the valid ones before them are written as leftover rows
        ordered = {k: v for k, v in tensors.items() if k != bad and k != "extra"}
        ordered.update({k: v for k, v in tensors.items() if k not in ordered})
        with pytest.raises(CheckpointError):
            self.run.append(self._next_step(gap), ordered)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), tensors=checkpoints)
    def append_out_of_order(self, data, tensors):
        step = data.draw(st.integers(min(self.steps) - 3, self.steps[-1]), label="step")
        with pytest.raises(CheckpointError):
            self.run.append(step, tensors)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), tensors=checkpoints, metrics=metric_values)
    def replace(self, data, tensors, metrics):
        step = data.draw(st.sampled_from(self.steps), label="step")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteWarning)
            self.run.replace(step, tensors, metrics)
        self.model[step] = tensors
        self.metrics[step] = dict(metrics)

    @rule(gap=st.integers(1, 5), tensors=checkpoints, metrics=metric_values,
          written=st.integers(1, len(SCHEMA)), record=st.booleans(), resize_step=st.booleans())
    def crash_before_commit(self, gap, tensors, metrics, written, record, resize_step):
        """An append that dies before its commit: after ``written`` of its tensors' rows, or
        after all rows (then maybe after recording its source, and after resizing ``step``)."""
        run = self.run
        n = len(run)
        step = self._next_step(gap)
        with run.writing(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteWarning)
            if written < len(SCHEMA):
                with contextlib.suppress(CheckpointError):  # "missing tensors" once n > 0
                    run._write_tensors(n, list(tensors.items())[:written], first=(n == 0))
                _drain(run)
            else:
                hashes, stats, nonfinite = run._write_tensors(n, tensors, first=(n == 0))
                run._write_row_extras(n, hashes, stats, metrics)
                _drain(run)
                if record:
                    run._record(step, nonfinite, {"path": "crashed"})
                if resize_step:
                    if L.STEP not in run._group or n == 0:
                        run._group.create_array(L.STEP, shape=(0,), dtype="int64",
                                                chunks=(4096,), fill_value=L.STEP_SENTINEL,
                                                overwrite=True)
                    run._group[L.STEP].resize((n + 1,))
        del run
        self.run = self._reopen()  # the crashed writer's object is gone
        self._check(self.run)

    @rule()
    def reopen(self):
        self._check(self._reopen(mode="r"))
        self.run = self._reopen()

    @precondition(lambda self: self.model)
    @rule(data=st.data(), name=st.sampled_from(list(SCHEMA)))
    def read_steps(self, data, name):
        steps = data.draw(st.lists(st.sampled_from(self.steps), max_size=6), label="steps")
        got = self.run.read(name, steps)
        shape, dtype = SCHEMA[name]
        expected = np.stack([self.model[s][name] for s in steps]) if steps else np.zeros(
            (0, *shape), dtype=dtype)
        assert _same_bits(got, expected)

    @precondition(lambda self: self.model)
    @rule(name=st.sampled_from(list(SCHEMA)))
    def read_all(self, name):
        expected = np.stack([t[name] for t in self.model.values()])
        assert _same_bits(self.run.read(name), expected)

    @rule(step=st.integers(-5, 200))
    def read_missing_step(self, step):
        if step in self.model:
            return
        with pytest.raises(StoreError):
            self.run.read("w", [step])

    @invariant()
    def steps_match(self):
        if hasattr(self, "run"):
            assert self.run.steps.tolist() == self.steps


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=15, stateful_step_count=15, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
