"""Listing the children of a group, robust to writes in flight.

zarr writes every object as ``<name>.<uuid>.partial`` and then renames it; a group listing that
runs meanwhile (a reader polling during an ingest) sees that temporary name and zarr warns that it
is "not recognized as a component of a Zarr hierarchy". Local stores are therefore listed from the
directory itself (children with a ``zarr.json`` of the wanted node type); other stores through
zarr, ignoring in-flight names.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import zarr


def child_names(root: zarr.Group, local: Path | None, path: str,
                kind: Literal["group", "array"]) -> list[str]:
    """Sorted names of the child groups or arrays of the group at ``path`` (``[]`` if missing)."""
    if local is not None:
        directory = local / path
        if not directory.is_dir():
            return []
        names = []
        for child in directory.iterdir():
            meta = child / "zarr.json"
            if child.is_dir() and meta.is_file() and _node_type(meta) == kind:
                names.append(child.name)
        return sorted(names)
    try:
        group = root[path] if path else root
    except KeyError:
        return []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component")
        names = group.group_keys() if kind == "group" else group.array_keys()
        return sorted(n for n in names if not n.endswith(".partial"))


def _node_type(meta: Path) -> str | None:
    try:
        return json.loads(meta.read_text()).get("node_type")
    except (OSError, ValueError):
        return None
