"""The checkpoint store: a zarr v3 group holding runs (DESIGN.md, "Store layout")."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dynlab.errors import MissingDependencyError, StoreError
from dynlab.store import _layout as L
from dynlab.store import _results
from dynlab.store._listing import child_names
from dynlab.store._run import Run

if TYPE_CHECKING:
    import xarray as xr

_RUN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+-]*$")


def _is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def _local_path(location: str) -> Path | None:
    if location.startswith("file://"):
        location = location[len("file://"):]
    return None if _is_url(location) else Path(location)


class Store:
    """A dynlab store. Open it with :func:`open_store`."""

    def __init__(self, location: str | os.PathLike[str], mode: Literal["r", "a"] = "r"):
        import zarr

        if mode not in ("r", "a"):
            raise StoreError(f"mode must be 'r' or 'a', not {mode!r}")
        self.location = os.fspath(location)
        self.read_only = mode == "r"
        local = _local_path(self.location)
        self.local_path = local.resolve() if local is not None else None
        if local is not None and local.exists() and not local.is_dir():
            raise StoreError(f"{self.location}: is a file, not a store directory")
        fresh = local is not None and not (local / "zarr.json").is_file()
        if fresh and self.read_only:
            raise StoreError(f"{self.location}: no dynlab store here (run 'dynlab ingest' first)")
        if fresh and local.is_dir() and any(local.iterdir()):
            raise StoreError(f"{self.location}: a non-empty directory that is not a dynlab store")
        target: Any = str(self.local_path) if local is not None else self.location
        try:
            if fresh:  # created with its attrs in one write: no half-made store after a crash
                self._root = zarr.create_group(target, attributes={L.ROOT_KEY: {"format": L.FORMAT}},
                                               zarr_format=3)
            else:
                self._root = zarr.open_group(target, mode="r" if self.read_only else "a")
        except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
            raise StoreError(f"{self.location}: cannot open as a dynlab store ({exc})") from None
        except ImportError as exc:  # an fsspec URL whose filesystem package is missing
            raise MissingDependencyError(f"{self.location}: {exc}") from None
        meta = self._root.attrs.get(L.ROOT_KEY)
        if meta is None:
            if self.read_only or child_names(self._root, self.local_path, "", "group") or (
                    child_names(self._root, self.local_path, "", "array")):
                raise StoreError(f"{self.location}: a zarr group, but not a dynlab store")
            self._root.attrs[L.ROOT_KEY] = {"format": L.FORMAT}
        elif meta.get("format") != L.FORMAT:
            raise StoreError(f"{self.location}: store format {meta.get('format')} is not "
                             f"supported (this dynlab reads format {L.FORMAT})")

    def __repr__(self) -> str:
        return f"<dynlab.Store {self.location!r} ({'r' if self.read_only else 'a'}), runs={self.runs}>"

    def __str__(self) -> str:
        return self.location

    @property
    def runs(self) -> list[str]:
        """Names of the runs, sorted."""
        return child_names(self._root, self.local_path, L.RUNS, "group")

    def __contains__(self, run: str) -> bool:
        return run in self.runs

    def run(self, name: str) -> Run:
        """Open an existing run."""
        if name not in self.runs:
            runs = self.runs
            hint = f"; runs: {', '.join(runs)}" if runs else "; the store has no runs"
            raise StoreError(f"{self.location}: no run named '{name}'{hint}")
        return Run(self, name, self._root[f"{L.RUNS}/{name}"])

    def create_run(self, name: str, attrs: dict[str, Any] | None = None, *,
                   exist_ok: bool = False) -> Run:
        """Create a run (or open it, with ``exist_ok``; given attrs are then merged in)."""
        self._require_writable()
        check_run_name(name)
        if name in self.runs:
            if not exist_ok:
                raise StoreError(f"{self.location}: run '{name}' already exists")
            run = self.run(name)
            if attrs:
                run.update_attrs(**attrs)
            return run
        if attrs and L.INTERNAL in attrs:
            raise StoreError(f"'{L.INTERNAL}' is a reserved run attribute")
        group = self._root.require_group(L.RUNS).require_group(name)
        run = Run(self, name, group)
        with run.writing():  # under the lock: a concurrent creator cannot overwrite bookkeeping
            if L.INTERNAL in dict(run._group.attrs):  # created meanwhile by another process
                if not exist_ok:
                    raise StoreError(f"{self.location}: run '{name}' already exists")
                if attrs:
                    run.update_attrs(**attrs)
            else:
                run._group.attrs.update({**(attrs or {}), L.INTERNAL: {"tensors": []}})
                run.refresh()
        return run

    # ------------------------------------------------------------------ results

    @property
    def results(self) -> dict[str, list[str]]:
        """``{analyzer: [targets]}`` of the stored results."""
        return {a: child_names(self._root, self.local_path, f"{_results.RESULTS}/{a}", "group")
                for a in child_names(self._root, self.local_path, _results.RESULTS, "group")}

    def result(self, analyzer: str, target: str) -> xr.Dataset:
        """A stored analyzer result (target = run name, or group name for group analyzers)."""
        return _results.read_result(self._root, analyzer, target)

    def result_info(self, analyzer: str, target: str) -> dict[str, Any] | None:
        """Provenance of a stored result (None if there is none); reads metadata only."""
        return _results.result_info(self._root, analyzer, target)

    def write_result(self, analyzer: str, target: str, dataset: xr.Dataset,
                     provenance: dict[str, Any]) -> None:
        """Store ``dataset`` as the result of ``analyzer`` on ``target``, replacing any earlier."""
        self._require_writable()
        _results.write_result(self._root, analyzer, target, dataset, provenance)

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.location}: store opened read-only (use mode='a')")

    def _cleanup_partial(self, run: str) -> None:
        """Remove temporary files of writes interrupted mid-file (local stores; under the lock):
        everything in the run, and the group metadata temporaries of ``runs/`` and the root
        (written only when a store or its first run is created)."""
        if self.local_path is None:
            return
        leftovers = [*(self.local_path / L.RUNS / run).rglob("*.partial"),
                     *self.local_path.glob("zarr.*.partial"),
                     *(self.local_path / L.RUNS).glob("zarr.*.partial")]
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)


def check_run_name(name: str) -> None:
    if not isinstance(name, str) or not _RUN_NAME.match(name):
        raise StoreError(
            f"invalid run name {name!r}: use letters, digits and _ . = + - (not starting with . or -)")


def open_store(location: str | os.PathLike[str] = "dynlab.zarr",
               mode: Literal["r", "a"] = "r") -> Store:
    """Open a dynlab store: a local directory or any fsspec URL (``s3://bucket/x.zarr``).

    ``mode="r"`` opens an existing store read-only; ``mode="a"`` opens it for writing and creates
    it if missing.
    """
    return Store(location, mode)
