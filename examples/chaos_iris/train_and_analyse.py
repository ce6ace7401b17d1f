"""Regular or chaotic? Replica divergence of an MLP trained on Iris at several learning rates.

    python examples/chaos_iris/train_and_analyse.py --store chaos.zarr [--iters 400] [--replicas 2]

The edge-of-stability experiment of METHODS.md §6 (Danovski, Soriano & Lacasa, arXiv 2404.05782):
a 4-10-3 MLP with sigmoid units, float64, trained full-batch by plain gradient descent on the
squared error ½·Σ_k (σ(z_k) − y_k)² (mean over the 150 samples, raw features) at η = 0.01, 1, 5.
For each η, a reference run (attr replica=0) and replicas whose initial weights are perturbed by
U(−ε, ε), ε = 1e-8, are written straight into the store with dynlab.Recorder, with attrs
group=iris-lr<η>, replica, lr, eps. Then the ``lyapunov`` analyzer (scope group: one result per
learning rate) gives d(t) = Σ|W(t) − W'(t)| averaged over replicas and Λ, the slope of ln d(t)
per iteration on its best-R² window.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_iris

import dynlab


def train(store: str, lr: float, replica: int, eps: float, iters: int, every: int) -> None:
    x, y = load_iris(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.tensor(y), 3).to(torch.float64)
    torch.manual_seed(0)  # the same initial weights for every run
    model = torch.nn.Sequential(torch.nn.Linear(4, 10), torch.nn.Sigmoid(), torch.nn.Linear(10, 3),
                                torch.nn.Sigmoid()).to(torch.float64)
    if replica:  # W'(0) = W(0) + U(−ε, ε)
        gen = torch.Generator().manual_seed(replica)
        with torch.no_grad():
            for p in model.parameters():
                p += (2 * torch.rand(p.shape, generator=gen, dtype=torch.float64) - 1) * eps
    attrs = {"group": f"iris-lr{lr:g}", "replica": replica, "lr": lr, "eps": eps if replica else 0.0}
    with dynlab.Recorder(store, f"iris-lr{lr:g}-r{replica}", attrs=attrs) as rec:
        for step in range(iters + 1):
            loss = 0.5 * ((model(x) - y) ** 2).sum(dim=1).mean()
            if step % every == 0:
                rec.log(step, model, train_loss=loss)
            model.zero_grad()
            loss.backward()
            with torch.no_grad():  # full-batch gradient descent
                for p in model.parameters():
                    p -= lr * p.grad


def lyapunov_results(store: str, groups: list[str]) -> dict:
    """Run the ``lyapunov`` analyzer through the Python API; until its entry point is installed,
    compute it directly on the stored runs (the same analyzer, the same numbers)."""
    from dynlab.analyzers import registry

    if "lyapunov" in registry.names():
        dynlab.run(store, ["lyapunov"])
        return {g: dynlab.results(store, "lyapunov", g) for g in groups}
    from dynlab.analyzers.lyapunov import Lyapunov
    from dynlab.testing import MemoryGroup

    st = dynlab.open_store(store)
    return {g: Lyapunov().compute(MemoryGroup(g, [st.run(r) for r in st.runs
                                                  if st.run(r).attrs["group"] == g]))
            for g in groups}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="chaos.zarr")
    parser.add_argument("--lrs", default="0.01,1,5", help="comma-separated learning rates")
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--eps", type=float, default=1e-8)
    parser.add_argument("--every", type=int, default=1, help="record every n-th iteration")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    lrs = [float(v) for v in args.lrs.split(",")]
    for lr in lrs:
        for replica in range(args.replicas + 1):
            train(args.store, lr, replica, args.eps, args.iters, args.every)
    results = lyapunov_results(args.store, [f"iris-lr{lr:g}" for lr in lrs])
    print(f"replica divergence, ε = {args.eps:g}, {args.replicas} replica(s), {args.iters} iterations")
    for lr in lrs:
        ds = results[f"iris-lr{lr:g}"]
        d = ds["distance"].values
        verdict = "chaotic" if ds.attrs["accepted"] and float(ds["exponent"]) > 0.01 else "regular"
        print(f"lr={lr:g}: Lambda={float(ds['exponent']):+.4f} per iteration, R2={float(ds['r2']):.3f}, "
              f"window {ds.attrs['window'][0]}-{ds.attrs['window'][1]}, d {d[0]:.2e} -> {d[-1]:.2e}"
              f" ({verdict})")


if __name__ == "__main__":
    main()
