"""Crash safety of ingest: SIGKILL an ingest at random moments, then check and finish the store.

DESIGN.md ("Store layout"): a checkpoint exists once its step is appended; rows beyond ``len(step)``
are leftovers of an interrupted write and are never read; one writer per run, and a writer killed
even by SIGKILL leaves no stale lock. Each trial here starts ``dynlab ingest`` on a directory of
``.npz`` checkpoints in a subprocess, kills it after a random delay, and checks that

- the store opens and the run's committed steps are a prefix of the sorted source steps;
- every committed checkpoint equals its source file bit for bit (no step is half visible);
- re-running the ingest completes: the committed steps are reported unchanged, the rest added;
- a third ingest reports every step unchanged.

Also: a second writer is refused while one holds the run's lock (one line on stderr, no
traceback), and the states a kill during the store's own creation leaves are completed by the
next ingest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import dynlab
from dynlab.api import ingest
from dynlab.errors import StoreError
from dynlab.store import _layout as L

RUN = "ckpts"
N_CHECKPOINTS = 20
N_TRIALS = 6
# ``python -m dynlab.cli`` would need a dynlab/cli/__main__.py; the -c form works either way.
CLI = [sys.executable, "-c", "from dynlab.cli import main; main()"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}
# zarr writes every object to ``<name>.<uuid>.partial`` and renames it into place; a reader that
# lists a group while a writer is mid-write sees that name and warns (see test_leftover_partial_*).
PARTIAL_WARNING = r".*\.partial is not recognized as a component of a Zarr hierarchy"


def _state(rng: np.random.Generator, i: int) -> dict[str, np.ndarray]:
    """One checkpoint, ~190 kB in five tensors of mixed dtypes, distinct per step."""
    state = {
        "embed.weight": rng.standard_normal((256, 128)).astype(np.float32),
        "layers.0.weight": rng.standard_normal((128, 96)).astype(np.float32),
        "layers.0.bias": rng.standard_normal(128).astype(np.float32),
        "head.weight": rng.standard_normal((10, 128)),  # float64
        "counts": rng.integers(-(2**40), 2**40, size=64, dtype=np.int64),
    }
    # bit patterns that a lossy or value-based comparison would miss
    state["layers.0.bias"][:3] = [np.float32(-0.0), np.float32(1e-45), np.float32(i)]
    return state


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> tuple[Path, dict[int, Path]]:
    """20 .npz checkpoints (3.9 MB), steps unevenly spaced, name order != step order."""
    directory = tmp_path_factory.mktemp("src") / RUN
    directory.mkdir()
    rng = np.random.default_rng(1234)
    steps = np.sort(rng.choice(np.arange(1, 5000), size=N_CHECKPOINTS, replace=False))
    files = {}
    for i, step in enumerate(steps):
        path = directory / f"model_step{int(step)}.npz"
        np.savez(path, **_state(rng, i))
        files[int(step)] = path
    return directory, files


@contextlib.contextmanager
def _ingesting(directory: Path, store: Path) -> Iterator[subprocess.Popen]:
    """``dynlab ingest directory --store store`` in a subprocess, never left running."""
    proc = subprocess.Popen([*CLI, "ingest", str(directory), "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        if not proc.stdout.closed:  # not reaped by the caller yet
            proc.communicate(timeout=30)


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL ``proc`` and reap it; whether it was still running (else it must have succeeded)."""
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    if proc.returncode == -signal.SIGKILL:
        return True
    assert proc.returncode == 0, stderr
    return False


def _committed_now(store: Path) -> int:
    """What a concurrent reader sees committed right now (0 while the run does not exist)."""
    if not _store_created(store):
        return 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PARTIAL_WARNING)
        try:
            return len(dynlab.open_store(store).run(RUN))
        except StoreError:
            return 0


@pytest.fixture(scope="module")
def baseline(sources, tmp_path_factory) -> tuple[float, float]:
    """Seconds from start to the first commit, and to exit, of an uninterrupted CLI ingest.

    The first commit is seen by polling the store from this process while the ingest runs: a
    concurrent reader, which must never fail on what it sees.
    """
    directory, files = sources
    store = tmp_path_factory.mktemp("baseline") / "store.zarr"
    started = time.perf_counter()
    first_commit = None
    with _ingesting(directory, store) as proc:
        while proc.poll() is None:
            if first_commit is None and _committed_now(store):
                first_commit = time.perf_counter() - started
            time.sleep(0.005)
        total = time.perf_counter() - started
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert _counts(stdout) == (N_CHECKPOINTS, 0)
    _check_store(store, files, complete=True)
    return first_commit or total / 2, total


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def _counts(stdout: str) -> tuple[int, int]:
    match = re.search(rf"run {RUN}: (\d+) added, (\d+) unchanged", stdout)
    assert match, stdout
    return int(match[1]), int(match[2])


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _store_created(store: Path) -> bool:
    """Whether the store's root metadata, with dynlab's format marker, was written.

    A kill in the few milliseconds between creating the store directory and writing that marker
    leaves an empty directory, or a bare zarr group: a store whose creation was interrupted, with
    nothing in it. ``open_store(mode="r")`` refuses those (a StoreError, not a crash) and the next
    ingest completes them (see ``test_ingest_completes_an_interrupted_store_creation``).
    """
    meta = store / "zarr.json"
    return meta.is_file() and L.ROOT_KEY in json.loads(meta.read_text()).get("attributes", {})


def _check_store(store: Path, files: dict[int, Path], *, complete: bool) -> int:
    """Invariants of a store an ingest of ``files`` may have been killed in; committed count."""
    if not _store_created(store):
        assert not complete
        assert not (store / L.RUNS).exists()
        return 0
    with warnings.catch_warnings():
        # a kill while zarr created an array can leave a .partial in runs/ (known, reported)
        warnings.filterwarnings("ignore", PARTIAL_WARNING)
        st = dynlab.open_store(store)  # must open, whatever moment the writer died at
        if RUN not in st.runs:
            assert not complete
            return 0
    run = st.run(RUN)
    expected = sorted(files)
    steps = run.steps.tolist()
    assert steps == expected[: len(steps)], "committed steps are not a prefix of the sources"
    if complete:
        assert steps == expected
    assert L.STEP_SENTINEL not in steps
    if not steps:
        return 0
    names = [t.name for t in run.tensors]
    with np.load(files[steps[0]]) as first:
        assert names == list(first.files)
    for step in steps:
        stored = run.checkpoint(step)
        with np.load(files[step]) as source:
            assert list(stored) == list(source.files)
            for name in source.files:
                assert _same_bits(stored[name], source[name]), (step, name)
    # uncommitted rows stay invisible through every read path
    for name in names:
        assert run.read(name).shape[0] == len(steps)
    assert run.hashes.shape == (len(steps), len(names))
    assert len(run) == len(steps)
    return len(steps)


def _finish_and_check(directory: Path, store: Path, files: dict[int, Path], committed: int):
    """Re-run the ingest after a kill: it completes, and a third run has nothing to do."""
    # the lock died with the process: a new ingest runs, keeps the committed steps, adds the rest
    result = _cli("ingest", str(directory), "--store", str(store))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert _counts(result.stdout) == (N_CHECKPOINTS - committed, committed)
    _check_store(store, files, complete=True)
    # the writer sweeps its run's directory of the killed writer's temporary files
    assert not list((store / L.RUNS / RUN).rglob("*.partial"))

    report = ingest(directory, store)
    (run_report,) = report.runs
    assert run_report.added == [] and run_report.replaced == []
    assert run_report.unchanged == sorted(files)


@pytest.mark.parametrize("trial", range(N_TRIALS))
def test_sigkill_during_ingest_leaves_a_readable_prefix(trial, sources, baseline, tmp_path):
    directory, files = sources
    store = tmp_path / "store.zarr"
    rng = np.random.default_rng([2024, trial])
    # trial k kills inside the k-th of N_TRIALS equal slices of [60 % of the time to the first
    # commit, the end] of an uninterrupted ingest: the first slice covers store creation, taking
    # the lock and the first append; the others the appends and commits of later checkpoints
    first_commit, total = baseline
    lo = 0.6 * first_commit
    delay = lo + (total - lo) * (trial + rng.random()) / N_TRIALS
    with _ingesting(directory, store) as proc:
        time.sleep(delay)
        killed = _kill(proc)
    committed = _check_store(store, files, complete=not killed)
    _finish_and_check(directory, store, files, committed)


def test_sigkill_right_after_a_commit(sources, tmp_path):
    """A kill as soon as a concurrent reader sees the first commit: mid-way through the second
    checkpoint's rows, leftovers the next ingest must overwrite (a deterministic counterpart of
    the random trials)."""
    directory, files = sources
    store = tmp_path / "store.zarr"
    with _ingesting(directory, store) as proc:
        seen = 0
        deadline = time.monotonic() + 30
        while not seen and proc.poll() is None and time.monotonic() < deadline:
            seen = _committed_now(store)
            time.sleep(0.002)
        assert _kill(proc), "the ingest finished before a commit was seen"
    committed = _check_store(store, files, complete=False)
    assert 1 <= seen <= committed < N_CHECKPOINTS
    _finish_and_check(directory, store, files, committed)


@pytest.mark.parametrize("state", ["empty directory", "bare zarr group"])
def test_ingest_completes_an_interrupted_store_creation(state, sources, tmp_path):
    """The states a kill during store creation leaves behind: the next ingest completes them."""
    import zarr

    directory, files = sources
    store = tmp_path / "store.zarr"
    store.mkdir()
    if state == "bare zarr group":
        zarr.open_group(str(store), mode="a")
    with pytest.raises(StoreError):  # not a store yet: a clean error, not a traceback
        dynlab.open_store(store)
    report = ingest(directory, store)
    assert report.runs[0].added == sorted(files)
    _check_store(store, files, complete=True)


def test_leftover_partial_outside_the_run_is_harmless(tmp_path):
    """What a writer killed while zarr created an array leaves: ``runs/zarr.<uuid>.partial``
    (zarr writes each missing parent's metadata to a temporary file first). Readers must not
    trip over it, and the next writer should sweep it."""
    store = tmp_path / "store.zarr"
    run = dynlab.open_store(store, mode="a").create_run(RUN)
    run.append(1, {"w": np.ones(3)})
    leftover = store / L.RUNS / "zarr.0123456789abcdef0123456789abcdef.partial"
    leftover.write_bytes(b'{"zarr_format": 3, "node_ty')  # cut off mid-write
    assert dynlab.open_store(store).runs == [RUN]  # warns today: an error under pytest
    with dynlab.open_store(store, mode="a").run(RUN).writing():
        pass
    assert not leftover.exists()


def test_second_writer_is_refused(sources, tmp_path):
    directory, files = sources
    store = tmp_path / "store.zarr"
    run = dynlab.open_store(store, mode="a").create_run(RUN)
    with run.writing():
        result = _cli("ingest", str(directory), "--store", str(store), "--run", RUN)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "being written by another process" in lines[0]
    assert len(dynlab.open_store(store).run(RUN)) == 0  # the refused writer wrote nothing

    # once the lock is released the same command succeeds
    result = _cli("ingest", str(directory), "--store", str(store), "--run", RUN)
    assert result.returncode == 0, result.stderr
    _check_store(store, files, complete=True)
