"""Rendering a result Dataset as tables or CSV: one block per set of variables sharing dims.

Flattening a whole Dataset into one frame would broadcast every variable over every dim (a
(k,) inertia curve repeated for every step × layer), so each block holds only variables of the
same dims.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr


def blocks(ds: xr.Dataset) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    import pandas as pd

    by_dims: dict[tuple[str, ...], list[str]] = {}
    for name, var in ds.data_vars.items():
        by_dims.setdefault(tuple(var.dims), []).append(str(name))
    out = []
    for dims, names in by_dims.items():
        if dims:
            frame = ds[names].reset_coords(drop=True).to_dataframe()
        else:
            frame = pd.DataFrame({n: [ds[n].item()] for n in names})
        out.append((dims, frame))
    return out


def to_csv(ds: xr.Dataset) -> str:
    return "\n".join(frame.to_csv() for _, frame in blocks(ds))


def print_tables(ds: xr.Dataset, console, max_rows: int = 30) -> None:
    from rich.table import Table

    for dims, frame in blocks(ds):
        flat = frame.reset_index() if dims else frame
        title = f"({', '.join(dims)})" if dims else "scalars"
        table = Table(*[str(c) for c in flat.columns], title=title)
        shown = flat if len(flat) <= max_rows else flat.iloc[: max_rows]
        for row in shown.itertuples(index=False):
            table.add_row(*[f"{v:.6g}" if isinstance(v, float) else str(v) for v in row])
        console.print(table)
        if len(flat) > max_rows:
            console.print(f"… {len(flat) - max_rows} more rows (use --format csv)")
    attrs = {k: v for k, v in ds.attrs.items() if k not in ("complete",)}
    if attrs:
        console.print("attrs: " + ", ".join(f"{k}={v}" for k, v in attrs.items()), highlight=False)
