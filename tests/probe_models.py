"""Model factories for the ``dynlab probe`` tests (``--model probe_models:<factory>``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

D_IN, HIDDEN, C = 8, 16, 4
NOT_CALLABLE = 3


def mlp() -> nn.Module:
    """Linear → ReLU → Linear (→ softmax by the probe)."""
    return nn.Sequential(nn.Linear(D_IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, C))


def mlp_by_width(attrs: dict) -> nn.Module:
    """A width sweep: each run's width from its attrs."""
    width = int(attrs["width"])
    return nn.Sequential(nn.Linear(D_IN, width), nn.ReLU(), nn.Linear(width, C))


def wider() -> nn.Module:
    return nn.Sequential(nn.Linear(D_IN, HIDDEN + 1), nn.ReLU(), nn.Linear(HIDDEN + 1, C))


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(D_IN, HIDDEN)
        self.out = nn.Linear(HIDDEN, C)


class Renamed(_Head):
    def forward(self, x):
        return self.out(F.relu(self.body(x)))


def other_keys() -> nn.Module:
    """The same shapes under other names than mlp()'s."""
    return Renamed()


def probabilities() -> nn.Module:
    """mlp() with its softmax inside: the same state dict keys."""
    return nn.Sequential(*mlp(), nn.Softmax(dim=1))


class Shared(nn.Module):
    """One Linear used twice in a forward: its input is ambiguous."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(D_IN, D_IN)
        self.head = nn.Linear(D_IN, C)

    def forward(self, x):
        return self.head(self.fc(torch.tanh(self.fc(x))))


def shared() -> nn.Module:
    return Shared()


def returns_dict():
    return {"fc": nn.Linear(D_IN, C)}


def raises():
    raise ValueError("no model today\nsecond line")


class Conv(nn.Module):
    """Conv2d (padding, stride) → ReLU → Conv1d over rows → mean → Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.ReLU())
        self.rows = nn.Conv1d(3, 2, 2, dilation=1, padding=1)
        self.head = nn.Linear(2, C)

    def forward(self, x):
        h = self.features(x)                   # (B, 3, 3, 3) from (B, 2, 5, 5)
        h = self.rows(h.mean(dim=2))           # (B, 2, 4)
        return self.head(h.mean(dim=2))


def conv() -> nn.Module:
    return Conv()



class WithDefaults(nn.Sequential):
    """mlp() (the same state dict keys), built by a class whose parameters all have defaults."""

    def __init__(self, hidden: int = HIDDEN, classes: int = C):
        super().__init__(nn.Linear(D_IN, hidden), nn.ReLU(), nn.Linear(hidden, classes))
