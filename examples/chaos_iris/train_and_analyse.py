"""Regular or chaotic? Replica divergence of an MLP trained on Iris at several learning rates.

    python examples/chaos_iris/train_and_analyse.py --store chaos.zarr [--iters 400] [--replicas 2]
    python examples/chaos_iris/train_and_analyse.py --store paper.zarr --setup paper --lrs 1 \\
        --iters 300 --every 5 --inits 20        # METHODS.md §6's reference, Λ ≈ 0.16 at η = 1

A 4-10-3 MLP with sigmoid hidden units, float64, trained full-batch by plain gradient descent at
η = 0.01, 1, 5. Two setups:

- ``--setup paper``: the setup of Danovski, Soriano & Lacasa (arXiv 2404.05782), as in the first
  author's code (github.com/GitKalo/ann_dynamics, src/iris_train.py): softmax output with the mean
  cross-entropy, weights N(0, 1) and zero biases, raw features, 120 of the 150 samples (theirs: the
  first 120 of TFDS's order; here a fixed random 120). Their replicas perturb the weight matrices
  only; here every parameter is perturbed, as METHODS.md says (Λ is the same either way).
- ``--setup mse`` (default): sigmoid output units and the squared error ½·Σ_k (σ(z_k) − y_k)² over
  all 150 samples, PyTorch's default initialisation. Regular at η = 0.01 and chaotic at η = 5 as
  in the paper, but at η = 1 the perturbation stays flat for ≈ 300 iterations before a burst,
  where the paper setup's grows from the start.

For each η and initial condition, a reference run (attr replica=0) and replicas whose initial
parameters are perturbed by U(−ε, ε), ε = 1e-8, are written straight into the store with
dynlab.Recorder, with attrs group, replica, lr, eps. The ``lyapunov`` analyzer (scope group: one
result per learning rate and initial condition) gives d(t) = Σ|W(t) − W'(t)| averaged over the
replicas and Λ, the slope of ln d(t) per iteration on its fitted window. Λ of one initial condition
scatters widely (at η = 1 in the paper setup, 0.2–0.5); with ``--inits N`` the example also
prints the slope of ⟨ln d(t)⟩ averaged over the N initial conditions, the number to compare with
METHODS' Λ ≈ 0.168.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_iris

import dynlab

SETUPS = ("mse", "paper")


def iris(setup: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw features (n, 4) and integer labels (n,); the paper setup keeps a fixed 120-sample split."""
    x, y = load_iris(return_X_y=True)
    if setup == "paper":
        keep = np.sort(np.random.default_rng(0).permutation(len(y))[:120])
        x, y = x[keep], y[keep]
    return torch.tensor(x, dtype=torch.float64), torch.tensor(y)


def model_for(setup: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # the same initial weights for every run of one initial condition
    layers = [torch.nn.Linear(4, 10), torch.nn.Sigmoid(), torch.nn.Linear(10, 3)]
    if setup == "mse":
        layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers).to(torch.float64)
    if setup == "paper":  # Keras Dense with the thesis code's initial weights: N(0, 1), zero biases
        with torch.no_grad():
            for layer in (model[0], model[2]):
                layer.weight.normal_(0.0, 1.0)
                layer.bias.zero_()
    return model


def loss_of(setup: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if setup == "paper":  # softmax + mean cross-entropy (Keras SparseCategoricalCrossentropy)
        return torch.nn.functional.cross_entropy(out, y)
    target = torch.nn.functional.one_hot(y, 3).to(torch.float64)
    return 0.5 * ((out - target) ** 2).sum(dim=1).mean()


def group_name(lr: float, init: int) -> str:
    return f"iris-lr{lr:g}" if init == 0 else f"iris-lr{lr:g}-i{init}"


def train(store: str, lr: float, replica: int, eps: float, iters: int, every: int,
          setup: str = "mse", init: int = 0) -> None:
    x, y = iris(setup)
    model = model_for(setup, init)
    if replica:  # W'(0) = W(0) + U(−ε, ε), every parameter
        gen = torch.Generator().manual_seed(1000 * init + replica)
        with torch.no_grad():
            for p in model.parameters():
                p += (2 * torch.rand(p.shape, generator=gen, dtype=torch.float64) - 1) * eps
    group = group_name(lr, init)
    attrs = {"group": group, "replica": replica, "lr": lr, "eps": eps if replica else 0.0}
    with dynlab.Recorder(store, f"{group}-r{replica}", attrs=attrs) as rec:
        for step in range(iters + 1):
            loss = loss_of(setup, model(x), y)
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


def ensemble_exponent(results: list) -> tuple[float, float]:
    """(Λ, R²) of ⟨ln d(t)⟩ over initial conditions (each d(t) already averaged over its replicas)."""
    from dynlab.chaos import finite_time_exponent

    steps = results[0]["step"].values
    logs = np.log(np.stack([ds["distance"].values for ds in results]))
    fte = finite_time_exponent(steps.astype(np.float64), np.exp(logs.mean(axis=0)))
    return fte.value, fte.r2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="chaos.zarr")
    parser.add_argument("--setup", choices=SETUPS, default="mse",
                        help="paper: CE/softmax, N(0,1) weights (arXiv 2404.05782); mse: sigmoid + MSE")
    parser.add_argument("--lrs", default="0.01,1,5", help="comma-separated learning rates")
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--inits", type=int, default=1, help="initial conditions per learning rate")
    parser.add_argument("--eps", type=float, default=1e-8)
    parser.add_argument("--every", type=int, default=1, help="record every n-th iteration")
    args = parser.parse_args(argv)
    if args.inits < 1 or args.replicas < 1:
        parser.error("--inits and --replicas must be at least 1")
    torch.set_num_threads(1)

    lrs = [float(v) for v in args.lrs.split(",")]
    for lr in lrs:
        for init in range(args.inits):
            for replica in range(args.replicas + 1):
                train(args.store, lr, replica, args.eps, args.iters, args.every, args.setup, init)
    groups = {lr: [group_name(lr, i) for i in range(args.inits)] for lr in lrs}
    results = lyapunov_results(args.store, [g for gs in groups.values() for g in gs])
    print(f"replica divergence ({args.setup} setup), ε = {args.eps:g}, {args.replicas} replica(s), "
          f"{args.inits} initial condition(s), {args.iters} iterations")
    for lr in lrs:
        per = [results[g] for g in groups[lr]]
        lam = np.array([float(ds["exponent"]) for ds in per])
        accepted = [bool(ds.attrs["accepted"]) for ds in per]
        if args.inits > 1:
            for g, ds, v in zip(groups[lr], per, lam, strict=True):
                print(f"  {g}: Lambda={v:+.4f}, R2={float(ds['r2']):.3f}, window "
                      f"{ds.attrs['window'][0]}-{ds.attrs['window'][1]}")
            value, r2 = ensemble_exponent(per)
            chaotic = value > 0.01 and r2 > 0.9
            print(f"lr={lr:g}: Lambda={value:+.4f} per iteration, R2={r2:.3f}, slope of <ln d> over "
                  f"{args.inits} initial conditions (theirs: median {np.median(lam):+.4f}, "
                  f"quartiles {np.percentile(lam, 25):+.4f} to {np.percentile(lam, 75):+.4f})"
                  f" ({'chaotic' if chaotic else 'regular'})")
            continue
        ds = per[0]
        d = ds["distance"].values
        verdict = "chaotic" if accepted[0] and lam[0] > 0.01 else "regular"
        print(f"lr={lr:g}: Lambda={lam[0]:+.4f} per iteration, R2={float(ds['r2']):.3f}, "
              f"window {ds.attrs['window'][0]}-{ds.attrs['window'][1]}, d {d[0]:.2e} -> {d[-1]:.2e}"
              f" ({verdict})")


if __name__ == "__main__":
    main()
