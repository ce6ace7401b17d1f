"""Prequential coding of scikit-learn's digits by a small MLP, recorded block by block.

The training samples arrive in blocks of doubling size (10, 20, 40, …; the last block takes what is
left of ``n_train``). For each block s: its code length b_s = Σ −log₂ p(y|x) is measured with the
model trained on blocks 1…s−1, *before* the model sees it (``Recorder.log_block``); then the model
trains on all blocks so far (warm start: the same network keeps training) and the checkpoint is
logged at step s with the training loss and the loss and accuracy on the held-out rest of the
digits. ``shuffle=True`` permutes the training labels: a control with nothing to learn, whose
information transfer should be ≈ 0 (or below).

The run's attrs carry ``n_classes`` (what ``info-transfer`` needs), the schedule and the setup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

N_CLASSES = 10


def doubling_schedule(n_total: int, first: int = 10) -> list[int]:
    """Block sizes first, 2·first, 4·first, … summing to ``n_total`` (the last block is cut short;
    a last remainder smaller than half the block before it joins that block)."""
    if first < 1 or n_total < first:
        raise ValueError(f"need 1 ≤ first ≤ n_total, got first={first}, n_total={n_total}")
    sizes, size, left = [], first, n_total
    while left > 0:
        take = min(size, left)
        sizes.append(take)
        left -= take
        size *= 2
    if len(sizes) > 1 and sizes[-1] < sizes[-2] // 2:
        last = sizes.pop()
        sizes[-1] += last
    return sizes


def record_prequential(store: Any, run: str, *, shuffle: bool = False, seed: int = 0,
                       n_train: int = 1400, first_block: int = 10, width: int = 64,
                       max_steps: int = 300, eval_every: int = 5, val_every: int = 5,
                       lr: float = 3e-3, batch: int = 64,
                       attrs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train a 64-``width``-``width``-10 MLP on digits block by block and record it into ``store``
    (a path or an open Store) as ``run``: weights at every block, ``log_block`` code lengths,
    ``train_loss``, ``val_loss`` (early-stopping split), ``test_loss``, ``test_acc`` (held out).
    Returns the schedule and the recorded block bits.

    Training on the data so far, with early stopping on data already sent (a valid code may use
    any choice made from the past; Blier & Ollivier 2018 choose hyperparameters the same way):
    every ``val_every``-th sample of each block is kept out of training as a validation set; from
    the current weights, up to ``max_steps`` Adam steps (lr ``lr``) on minibatches of ``batch``
    samples of the other seen samples, and the weights with the lowest validation loss (checked
    every ``eval_every`` steps) code the next block. Without it a
    net that memorises shuffled labels is confidently wrong on the next block and costs far more
    than the uniform code.
    """
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    from dynlab.api import Recorder
    from dynlab.demo._train import make_mlp
    from dynlab.errors import StoreError

    torch.set_num_threads(1)
    x_all, y_all = load_digits(return_X_y=True)
    if not 0 < n_train < len(x_all):
        raise ValueError(f"n_train must be in (0, {len(x_all)}), got {n_train}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_all))
    tr, te = order[:n_train], order[n_train:]
    x = torch.from_numpy((x_all / 16.0).astype(np.float32))  # fixed scaling: no peeking ahead
    y = torch.from_numpy(y_all.astype(np.int64))
    xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    if shuffle:
        ytr = ytr[torch.from_numpy(rng.permutation(n_train))]

    sizes = doubling_schedule(n_train, first_block)
    ends = np.cumsum(sizes)
    is_val = np.zeros(n_train, dtype=bool)
    for start, size in zip(ends - sizes, sizes, strict=True):
        is_val[start + val_every - 1:start + size:val_every] = True
    torch.manual_seed(seed)
    model = make_mlp(width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    bits: list[float] = []
    meta = {"n_classes": N_CLASSES, "dataset": "digits", "shuffled_labels": bool(shuffle),
            "seed": int(seed), "width": int(width), "block_sizes": [int(b) for b in sizes],
            "max_steps": int(max_steps), "val_every": int(val_every), "lr": lr,
            **dict(attrs or {})}
    with Recorder(store, run, attrs=meta) as rec:
        if len(rec.run.steps):
            raise StoreError(f"run '{run}' already holds {len(rec.run.steps)} checkpoint(s); "
                             "record into a new store or under another run name")
        for s, end in enumerate(int(e) for e in ends):
            start = end - sizes[s]
            model.eval()
            with torch.no_grad():  # the block's code length BEFORE the model trains on it
                nats = nn.functional.cross_entropy(model(xtr[start:end]), ytr[start:end],
                                                   reduction="sum").item()
            bits.append(nats / math.log(2))
            rec.log_block(s, sizes[s], bits[-1])
            fit = torch.from_numpy(np.flatnonzero(~is_val[:end]))
            val = torch.from_numpy(np.flatnonzero(is_val[:end]))
            val_loss = _train_early_stopped(model, opt, loss_fn, xtr, ytr, fit, val, gen,
                                            max_steps=max_steps, eval_every=eval_every, batch=batch)
            with torch.no_grad():
                out = model(xte)
                rec.log(s, model, train_loss=loss_fn(model(xtr[fit]), ytr[fit]).item(),
                        val_loss=val_loss, test_loss=loss_fn(out, yte).item(),
                        test_acc=(out.argmax(1) == yte).float().mean().item())
    return {"run": run, "block_sizes": sizes, "block_bits": bits, "n_classes": N_CLASSES}


def _train_early_stopped(model: Any, opt: Any, loss_fn: Any, x: Any, y: Any, fit: Any, val: Any,
                         gen: Any, *, max_steps: int, eval_every: int, batch: int) -> float:
    """Train ``model`` on samples ``fit``; leave it at the weights of lowest loss on ``val`` (on
    ``fit`` when ``val`` is empty) among those after every ``eval_every`` steps. Returns that loss.
    (The starting weights are not a candidate: the weights move at every block, so no two
    checkpoints are identical.)"""
    import copy

    import torch

    check = val if len(val) else fit

    def loss_now() -> float:
        model.eval()
        with torch.no_grad():
            return loss_fn(model(x[check]), y[check]).item()

    best, best_state = math.inf, model.state_dict()
    for step in range(1, max_steps + 1):
        model.train()
        idx = fit[torch.randint(0, len(fit), (min(batch, len(fit)),), generator=gen)]
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
        if step % eval_every == 0:
            now = loss_now()
            if now < best:
                best, best_state = now, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return best


#: the demo's two runs: true labels, and the shuffled-label control
DEMO_RUNS = {"digits": False, "digits-shuffled": True}


def prequential_demo(store: Any, seed: int = 0) -> tuple[dict[str, Any], list[str]]:
    """Record the true-label and shuffled-label runs into ``store``, run ``info-transfer`` on
    them; returns the results (run → Dataset) and the lines that summarise them."""
    from dynlab import api

    for run, shuffle in DEMO_RUNS.items():
        record_prequential(store, run, shuffle=shuffle, seed=seed)
    api.run(store, ["info-transfer"], runs=list(DEMO_RUNS))
    results = {run: api.results(store, "info-transfer", run) for run in DEMO_RUNS}
    lines = ["info-transfer (METHODS §7): digits arriving in blocks of doubling size; each block "
             "coded by the model trained on the blocks before it"]
    for run, ds in results.items():
        a = ds.attrs
        lines.append(f"  {run:<16} L_preq {a['L_preq']:6.0f} of L_uniform {a['L_uniform']:.0f} bits"
                     f" → L_IT {a['L_IT']:+6.0f} bits ({a['L_IT_per_sample']:+.2f} bits/sample; "
                     f"largest possible {a['L_IT_max']:.0f})")
    return results, lines
