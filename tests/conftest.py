"""Shared fixtures: temporary stores and small synthetic checkpoints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest


@pytest.fixture
def store_path(tmp_path):
    """Path of a store that does not exist yet."""
    return tmp_path / "store.zarr"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def mlp_state(rng: np.random.Generator, widths=(8, 16, 4), dtype=np.float32) -> dict[str, np.ndarray]:
    """A small MLP state dict in torch's (out, in) convention, source order."""
    state = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        state[f"layers.{i}.weight"] = rng.standard_normal((n_out, n_in)).astype(dtype)
        state[f"layers.{i}.bias"] = rng.standard_normal(n_out).astype(dtype)
    return state
