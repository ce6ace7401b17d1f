"""Small synthetic runs with a fixed seed: what the conformance kit analyses by default."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from dynlab.testing._memory import MemoryGroup, MemoryRun

#: Unevenly spaced on purpose: an analyzer that confuses steps with row indices shows it.
STEPS = (0, 1, 2, 4, 8, 16)
WIDTHS = (8, 16, 16, 4)


def synthetic_run(name: str = "synthetic", *, seed: int = 0, steps: Sequence[int] = STEPS,
                  widths: Sequence[int] = WIDTHS, attrs: Mapping[str, Any] | None = None
                  ) -> MemoryRun:
    """A 3-layer MLP-like run: ``layers.{i}.weight`` (out, in) and ``layers.{i}.bias``, float32,
    drifting from their initialisation by a random walk whose steps shrink over training;
    metrics ``train_loss`` and ``val_loss`` decay like ``exp(-t/8)``; attrs width/depth/lr/seed
    (plus ``attrs``).

    Deterministic: the same arguments give the same run.
    """
    rng = np.random.default_rng(seed)
    t = np.asarray(steps, dtype=np.int64)
    # drift between consecutive checkpoints ∝ sqrt(Δt) · exp(-t/16): fast early, slow late
    scale = np.sqrt(np.diff(t, prepend=t[0]).astype(np.float64)) * np.exp(-t / 16.0)
    tensors: dict[str, np.ndarray] = {}
    for i, (n_in, n_out) in enumerate(pairwise(widths)):
        for key, shape in ((f"layers.{i}.weight", (n_out, n_in)), (f"layers.{i}.bias", (n_out,))):
            init = rng.standard_normal(shape) / np.sqrt(n_in)
            noise = rng.standard_normal((len(t), *shape)) * 0.05
            noise *= scale.reshape(-1, *([1] * len(shape)))
            tensors[key] = (init + np.cumsum(noise, axis=0)).astype(np.float32)
    train = 0.1 + 2.0 * np.exp(-t / 8.0) + 0.01 * rng.standard_normal(len(t))
    val = train + 0.05 + 0.002 * t
    run_attrs = {"width": int(widths[1]), "depth": len(widths) - 1, "lr": 0.1, "seed": seed,
                 **(attrs or {})}
    return MemoryRun(name, t, tensors, {"train_loss": train, "val_loss": val}, run_attrs)


def synthetic_group(name: str = "synthetic") -> MemoryGroup:
    """Two replicas of :func:`synthetic_run` (same architecture, seeds 0 and 1), both with the
    attr ``group`` = ``name``."""
    return MemoryGroup(name, [synthetic_run(f"{name}-seed{seed}", seed=seed, attrs={"group": name})
                              for seed in (0, 1)])
