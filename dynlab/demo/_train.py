"""Train small MLPs on scikit-learn's bundled digits and save a plain torch checkpoint every epoch.

A small training subset (250 samples) makes them overfit within a few dozen epochs, which is what
the analyses are about. Each run directory holds ``epoch_<k>.pt`` files (``{"model_state_dict",
"epoch"}``) and a ``metrics.csv`` sidecar (train/validation loss and accuracy): exactly what a
user's own training script would leave behind, so the demo ingests it like any other folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


def digits_split(n_train: int = 250, seed: int = 0):
    """Standardised digits: a small training set and the rest as validation."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x = (x / 16.0).astype(np.float32)
    tr, va = order[:n_train], order[n_train:]
    mean, std = x[tr].mean(0), x[tr].std(0) + 1e-3
    x = (x - mean) / std
    return (torch.from_numpy(x[tr]), torch.from_numpy(y[tr])), (torch.from_numpy(x[va]),
                                                               torch.from_numpy(y[va]))


def make_mlp(width: int, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    n_in = 64
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, 10))
    return nn.Sequential(*layers)


def train_run(out: Path, width: int, seed: int, epochs: int, lr: float = 3e-3,
              batch: int = 50) -> Path:
    """Train one MLP; write ``out/w{width}-s{seed}/epoch_{k}.pt`` and ``metrics.csv``."""
    torch.manual_seed(seed)
    (xtr, ytr), (xva, yva) = digits_split(seed=0)
    model = make_mlp(width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    run_dir = out / f"w{width}-s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for epoch in range(epochs + 1):
        if epoch > 0:
            model.train()
            for idx in torch.randperm(len(xtr), generator=gen).split(batch):
                opt.zero_grad()
                loss_fn(model(xtr[idx]), ytr[idx]).backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            tr_out, va_out = model(xtr), model(xva)
            row = {"step": epoch,
                   "train_loss": loss_fn(tr_out, ytr).item(),
                   "val_loss": loss_fn(va_out, yva).item(),
                   "train_acc": (tr_out.argmax(1) == ytr).float().mean().item(),
                   "val_acc": (va_out.argmax(1) == yva).float().mean().item()}
        rows.append(row)
        torch.save({"model_state_dict": model.state_dict(), "epoch": epoch},
                   run_dir / f"epoch_{epoch}.pt")
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return run_dir
