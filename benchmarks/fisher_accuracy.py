"""Accuracy of information-length estimators for ``fisher-velocity`` (issue 4, METHODS.md §1).

A fixed, seeded standard-normal sample x of N values is moved coherently over T snapshots
(x_k = μ_k + s_k·x, k = 0..T−1, equal steps in L) and L is estimated from histograms on fixed
edges; the relative error is printed against the exact Gaussian-family path length *of that
sample* (mean m, std sd):

    shift by Δ:        L = Δ / sd
    rescale by s:      μ = s·m, σ = s·sd  →  L = √(m²/sd² + 2) · ln s        (= √2·ln s for m = 0)

Noise: T independent re-samplings of N(0, 1) (nothing moves, the ideal L is 0); the L printed is
the floor an estimator reports on pure snapshot noise.

Candidates (edges fixed for the run, as in the analyzer):
  cur      uniform over the run's min–max, B = ⌊2.59·P^(1/3)⌋ capped at 200 (current default)
  u1.0     uniform min–max, B = ⌊1.0·P^(1/3)⌋
  u0.5     uniform min–max, B = ⌊0.5·P^(1/3)⌋
  u50      uniform min–max, B = 50
  q1.0     equal-probability edges: interior quantiles of the pooled first+last snapshot,
           outer edges the run's min/max, B = ⌊1.0·P^(1/3)⌋
  cur+ad   current bins, adaptive Δt on the histogram distance: from an anchor snapshot a, step
           to the first k with D(a, k) = 2·arccos Σ√(p_a p_k) ≥ θ, θ = max(0.2, 3·√(2(B−1)/P))
           (3× the two-sample noise floor); the path is closed with the last snapshot
  u1.0+ad  u1.0 bins, the same adaptive Δt
  q1.0+ad  q1.0 bins, the same adaptive Δt
  u1.0+adm u1.0+ad, but a closing residual step shorter than θ/2 is merged into the previous one
  u0.5+ad  u0.5 bins, the same adaptive Δt
  u1.0+mom u1.0 bins, the authors' moment trigger: step once |Δμ| > 0.2·σ_a or |σ/σ_a − 1| > 0.1
  gauss    the Gaussian estimator, Σ of closed-form distances between consecutive (μ, σ)

``sub`` columns: the analyzer's subsampling check, L(every 2nd snapshot) / L(all up to the same
last snapshot), for the same candidate.

Run:  .venv/bin/python benchmarks/fisher_accuracy.py            (about a minute on 2 cores)
"""

from __future__ import annotations

import itertools
import sys
import time

import numpy as np

from dynlab.analyzers._fisher import gaussian_distance
from dynlab.geometry import histogram_counts, information_length

NS = (10_000, 100_000, 1_000_000)
TS = (20, 80)
MOVES = ("shift2", "scale2", "shift0.5")
SEED = 20261123


def sample(n: int) -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal(n)


def snapshot(x: np.ndarray, move: str, k: int, T: int, n: int) -> np.ndarray:
    f = k / (T - 1)
    if move == "shift2":
        return x + 2.0 * f
    if move == "shift0.5":
        return x + 0.5 * f
    if move == "scale2":
        return x * 2.0 ** f
    if move == "noise":  # an independent re-sample per snapshot (reproducible per k)
        return np.random.default_rng([SEED, n, T, k]).standard_normal(n)
    raise ValueError(move)


def exact(x: np.ndarray, move: str) -> float:
    m, sd = x.mean(), x.std()
    return {"shift2": 2.0 / sd, "shift0.5": 0.5 / sd,
            "scale2": np.sqrt(m * m / (sd * sd) + 2.0) * np.log(2.0), "noise": 0.0}[move]


def probs(c: np.ndarray) -> np.ndarray:
    return c / c.sum(axis=1, keepdims=True)


def fr(p: np.ndarray, q: np.ndarray) -> float:
    return float(2.0 * np.arccos(min(1.0, float(np.sqrt(p * q).sum()))))


def length_full(p: np.ndarray) -> float:
    return float(information_length(p)[-1])


def length_adaptive(p: np.ndarray, theta: float) -> float:
    """Greedy adaptive Δt on the histogram distance, closed with the last snapshot."""
    L, a = 0.0, 0
    for k in range(1, len(p)):
        d = fr(p[a], p[k])
        if d >= theta or k == len(p) - 1:
            L, a = L + d, k
    return L


def length_adaptive_merged(p: np.ndarray, theta: float) -> float:
    """As :func:`length_adaptive`, but a closing residual step shorter than θ/2 is merged into the
    previous step (the last anchor is dropped and the chord goes straight to the last snapshot)."""
    anchors, a = [0], 0
    for k in range(1, len(p) - 1):
        if fr(p[a], p[k]) >= theta:
            anchors.append(k)
            a = k
    if len(anchors) > 1 and fr(p[anchors[-1]], p[-1]) < theta / 2:
        anchors.pop()
    anchors.append(len(p) - 1)
    return float(sum(fr(p[i], p[j]) for i, j in itertools.pairwise(anchors)))


def length_moments(p: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> float:
    """The authors' trigger on the moments (the elapsed-time trigger left out), closed at the end."""
    L, a = 0.0, 0
    for k in range(1, len(p)):
        if (abs(mu[k] - mu[a]) > 0.2 * sd[a] or abs(sd[k] / sd[a] - 1) > 0.1
                or k == len(p) - 1):
            L, a = L + fr(p[a], p[k]), k
    return L


def gauss_length(mu: np.ndarray, sd: np.ndarray) -> float:
    return float(gaussian_distance(mu[:-1], sd[:-1], mu[1:], sd[1:]).sum())


def floor_theta(B: int, P: int) -> float:
    return max(0.2, 3.0 * np.sqrt(2.0 * (B - 1) / P))


def run_case(x: np.ndarray, move: str, T: int) -> dict[str, tuple[float, float]]:
    n = len(x)
    # pass 1: the run's range, moments per snapshot, first and last snapshot (for quantile edges)
    lo, hi = np.inf, -np.inf
    mu, sd = np.empty(T), np.empty(T)
    for k in range(T):
        y = snapshot(x, move, k, T, n)
        lo, hi = min(lo, y.min()), max(hi, y.max())
        mu[k], sd[k] = y.mean(), y.std()
        if k == 0:
            first = y.copy()
        if k == T - 1:
            last = y
    r = n ** (1.0 / 3.0)
    bins = {"cur": int(min(200, np.floor(2.59 * r))), "u1.0": int(np.floor(1.0 * r)),
            "u0.5": int(np.floor(0.5 * r)), "u50": 50}
    edges = {k: np.linspace(lo, hi, b + 1) for k, b in bins.items()}
    bq = int(np.floor(1.0 * r))
    qe = np.quantile(np.concatenate([first, last]), np.linspace(0, 1, bq + 1))
    qe[0], qe[-1] = lo, hi
    edges["q1.0"] = qe
    # pass 2: counts on every edge set
    counts = {k: np.zeros((T, len(e) - 1), np.int64) for k, e in edges.items()}
    for k in range(T):
        y = snapshot(x, move, k, T, n)[None, :]
        for name, e in edges.items():
            counts[name][k] = histogram_counts(y, e, backend="numba")[0]
    P = {k: probs(c) for k, c in counts.items()}
    last_half = (T - 1) // 2 * 2  # last index of p[::2]

    sel_all, sel_part, sel_half = np.arange(T), np.arange(last_half + 1), np.arange(0, T, 2)

    def both(f, p):  # (L on all, L(every 2nd)/L(all up to the same last snapshot)); f(p, idx)
        full = f(p[sel_all], sel_all)
        part = f(p[sel_part], sel_part)
        return full, (f(p[sel_half], sel_half) / part if part > 0 else np.nan)

    out = {}
    for name in ("cur", "u1.0", "u0.5", "u50", "q1.0"):
        out[name] = both(lambda p, i: length_full(p), P[name])
    for name in ("cur", "u1.0", "q1.0"):
        th = floor_theta(P[name].shape[1], n)
        out[name + "+ad"] = both(lambda p, i, th=th: length_adaptive(p, th), P[name])
    th = floor_theta(P["u1.0"].shape[1], n)
    out["u1.0+adm"] = both(lambda p, i: length_adaptive_merged(p, th), P["u1.0"])
    th = floor_theta(P["u0.5"].shape[1], n)
    out["u0.5+ad"] = both(lambda p, i: length_adaptive(p, th), P["u0.5"])
    out["u1.0+mom"] = both(lambda p, i: length_moments(p, mu[i], sd[i]), P["u1.0"])
    g_full = gauss_length(mu, sd)
    g_part = gauss_length(mu[: last_half + 1], sd[: last_half + 1])
    out["gauss"] = (g_full, gauss_length(mu[::2], sd[::2]) / g_part if g_part > 0 else np.nan)
    out["_bins"] = (bins["cur"], bins["u1.0"], bins["u0.5"], bq)
    return out


CANDS = ("cur", "u1.0", "u0.5", "u50", "q1.0", "cur+ad", "u1.0+ad", "u1.0+adm", "u0.5+ad",
         "q1.0+ad", "u1.0+mom", "gauss")


def main() -> None:
    t0 = time.perf_counter()
    # warm the numba kernel (compile/cache load) outside the timings of the table
    histogram_counts(np.zeros((1, 10)), np.linspace(0, 1, 3), backend="numba")
    head = f"{'N':>9} {'T':>3} {'move':<8} {'exact':>6} " + " ".join(f"{c:>8}" for c in CANDS)
    print("relative error of L, % (noise rows: L itself, ideal 0)")
    print(head)
    subs = []
    for n in NS:
        x = sample(n)
        for T in TS:
            for move in (*MOVES, "noise"):
                res = run_case(x, move, T)
                ex = exact(x, move)
                if move == "noise":
                    cells = " ".join(f"{res[c][0]:8.4f}" for c in CANDS)
                else:
                    cells = " ".join(f"{100 * (res[c][0] / ex - 1):+8.2f}" for c in CANDS)
                print(f"{n:>9} {T:>3} {move:<8} {ex:6.3f} {cells}", flush=True)
                subs.append((n, T, move, res))
            b = res["_bins"]
            print(f"{'':>9} {'':>3} bins: cur={b[0]} u1.0={b[1]} u0.5={b[2]} q1.0={b[3]}", flush=True)
    print()
    print("subsampling check: L(every 2nd)/L(all)")
    print(f"{'N':>9} {'T':>3} {'move':<8} {'':>6} " + " ".join(f"{c:>8}" for c in CANDS))
    for n, T, move, res in subs:
        print(f"{n:>9} {T:>3} {move:<8} {'':>6} " + " ".join(f"{res[c][1]:8.3f}" for c in CANDS))
    print(f"\nruntime {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
