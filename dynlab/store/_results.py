"""Analyzer results in the store: ``results/<analyzer>/<target>``, one xarray Dataset each.

The Dataset's attrs carry the provenance (analyzer, version, params, input fingerprint, dynlab
version, time). A result is written in two steps: the Dataset with ``complete: false``, then the
attrs flipped to ``complete: true``; an interrupted write therefore never passes for a finished
result, and the engine's cache only trusts complete ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dynlab.errors import StoreError

if TYPE_CHECKING:
    import xarray as xr
    import zarr

RESULTS = "results"
COMPLETE = "complete"


def result_path(analyzer: str, target: str) -> str:
    return f"{RESULTS}/{analyzer}/{target}"


def write_result(root: zarr.Group, analyzer: str, target: str, dataset: xr.Dataset,
                 provenance: dict[str, Any]) -> None:
    """Replace the stored result of ``analyzer`` on ``target`` with ``dataset``."""
    import zarr

    ds = _storable(dataset)
    ds.attrs = {**dataset.attrs, **provenance, COMPLETE: False}
    ds.to_zarr(root.store, group=result_path(analyzer, target), mode="w", consolidated=False,
               zarr_format=3)
    group = zarr.open_group(root.store, path=result_path(analyzer, target), mode="r+")
    group.attrs[COMPLETE] = True


def read_result(root: zarr.Group, analyzer: str, target: str) -> xr.Dataset:
    """The stored result, loaded into memory."""
    import xarray as xr

    info = result_info(root, analyzer, target)
    if info is None:
        raise StoreError(f"no result of '{analyzer}' for '{target}' (run: dynlab run {analyzer})")
    if not info.get(COMPLETE):
        raise StoreError(f"the result of '{analyzer}' for '{target}' is incomplete (its write was "
                         f"interrupted); run: dynlab run {analyzer} --force")
    with xr.open_zarr(root.store, group=result_path(analyzer, target), consolidated=False,
                      zarr_format=3) as ds:
        return ds.load()


def result_info(root: zarr.Group, analyzer: str, target: str) -> dict[str, Any] | None:
    """The provenance attrs of a stored result, or None; reads only its metadata."""
    path = result_path(analyzer, target)
    try:
        return dict(root[path].attrs)
    except KeyError:
        return None


def _storable(dataset: xr.Dataset) -> xr.Dataset:
    """Unicode coords/variables as variable-length strings: zarr v3 has no stable fixed-width
    string type, and readers elsewhere must be able to open the result."""
    strings = {n: (v.dims, v.values.astype(object), v.attrs)
               for n, v in dataset.variables.items() if v.dtype.kind == "U"}
    coords = {n: v for n, v in strings.items() if n in dataset.coords}
    data = {n: v for n, v in strings.items() if n not in dataset.coords}
    return dataset.assign_coords(coords).assign(data)
