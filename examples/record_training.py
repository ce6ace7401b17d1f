"""Write checkpoints straight from a training loop with dynlab.Recorder, then analyse them.

    python examples/record_training.py --store recorded.zarr

A small MLP learns a noisy linear map with SGD; every 5 steps the Recorder appends the model's
weights and the loss to the store (no checkpoint files in between). Then the weight-change
analyzer runs on the recorded run and its per-layer relative change is printed.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import dynlab


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="recorded.zarr")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 2) + 0.1 * torch.randn(256, 2)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    with dynlab.Recorder(args.store, "sgd-mlp", attrs={"width": 32, "lr": 0.05}) as rec:
        for step in range(args.steps + 1):
            loss = nn.functional.mse_loss(model(x), y)
            if step % 5 == 0:
                rec.log(step, model, train_loss=loss)
            opt.zero_grad()
            loss.backward()
            opt.step()

    dynlab.run(args.store, ["weight-change"], runs=["sgd-mlp"])
    rwc = dynlab.results(args.store, "weight-change", "sgd-mlp")["rwc"]
    for layer in rwc["layer"].values:
        curve = rwc.sel(layer=layer).values
        print(f"{layer}: relative weight change {curve[0]:.3g} (first 5 steps) → "
              f"{curve[-1]:.3g} (last 5 steps)")


if __name__ == "__main__":
    main()
