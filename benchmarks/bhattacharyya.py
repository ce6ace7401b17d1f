"""Benchmark of the per-sample Bhattacharyya distance matrix (METHODS.md §2, issue 7): the heaviest
kernel of dynlab.

    .venv/bin/python benchmarks/bhattacharyya.py [--m 400] [--n 2000] [--c 10] [--large]

P (m, N, C) random class probabilities (seeded), the symmetric m × m matrix d_B, each case in its
own process (so its peak RSS is its own; numba compiled and torch loaded before the clock starts):

- ``einsum``: the naive vectorised way — ``np.einsum('inc,jnc->ijn')`` on blocks of 64 × 64
  checkpoints × all samples, then log and mean (only at the default size: it is slow);
- ``numpy``: the reference backend (√P once per block of samples, batched matmul, log);
- ``numba``: the CPU backend (parallel tiles, one log per 24 samples);
- ``torch``: the torch backend on the CPU (batched matmul, one log per 24 samples).

Printed: seconds, ratio to the numpy reference, multiply-adds/s and (equivalent) logs/s for the
m(m+1)/2 · N · C multiply-adds and m(m+1)/2 · N logarithms a symmetric matrix needs, the peak RSS
added by the case, and the largest difference from the numpy reference. Next to them, the
machine's own rates for plain ``np.log`` and a float64 matrix product (the floor). ``--large``
adds m = 1,000 × N = 5,000 for numba and torch only. ``--threads`` sets the threads of numba, torch
and BLAS in the cases (default: all cores; on a shared, loaded machine, torch's threads spin and
1 thread can be faster).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

CASES = ("einsum", "numpy", "numba", "torch")


def _einsum(P: np.ndarray, block: int = 64) -> np.ndarray:
    m = P.shape[0]
    s = np.sqrt(P)
    out = np.zeros((m, m))
    for i0 in range(0, m, block):
        for j0 in range(i0, m, block):
            bc = np.einsum("inc,jnc->ijn", s[i0:i0 + block], s[j0:j0 + block])
            out[i0:i0 + block, j0:j0 + block] = -np.log(np.clip(bc, 1e-12, 1.0)).mean(axis=2)
    iu = np.triu_indices(m, 1)
    out[(iu[1], iu[0])] = out[iu]
    np.fill_diagonal(out, 0.0)
    return out


def _run_case(case: str, path: str, ref_path: str) -> None:
    """In a child process: time one case on the array at ``path``; print a JSON line."""
    P = np.load(path)
    if case == "einsum":
        fn = _einsum
    else:
        from dynlab.kernels.bhattacharyya import bhattacharyya_matrix

        if case == "torch":
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

        def fn(x):
            return bhattacharyya_matrix(x, backend=case)
    fn(np.ascontiguousarray(P[:8, :50]))  # compile / load before the clock
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    D = fn(P)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    err = float(np.abs(D - np.load(ref_path)).max()) if os.path.exists(ref_path) else 0.0
    if case == "numpy" and not os.path.exists(ref_path):
        np.save(ref_path, D)
    print(json.dumps({"case": case, "seconds": dt, "peak_mb": peak / 1024, "max_diff": err}))


def _floor() -> tuple[float, float]:
    """(logs/s of np.log on 1e7 float64, multiply-adds/s of a 1500² float64 matmul)."""
    x = np.random.default_rng(0).uniform(0.5, 1.0, 10_000_000)
    np.log(x)
    t0 = time.perf_counter()
    for _ in range(3):
        np.log(x)
    logs = 3 * x.size / (time.perf_counter() - t0)
    a = np.random.default_rng(1).standard_normal((1500, 1500))
    a @ a
    t0 = time.perf_counter()
    for _ in range(3):
        a @ a
    return logs, 3 * 1500**3 / (time.perf_counter() - t0)


def _size(m: int, n: int, c: int, cases: tuple[str, ...], tmp: str, threads: int) -> None:
    rng = np.random.default_rng(0)
    P = np.empty((m, n, c))
    for i in range(m):  # row by row: no large temporaries in the parent
        P[i] = rng.dirichlet(np.full(c, 0.5), size=n)
    path, ref = os.path.join(tmp, f"P_{m}_{n}.npy"), os.path.join(tmp, f"D_{m}_{n}.npy")
    np.save(path, P)
    del P
    pairs = m * (m + 1) / 2
    madds, logs = pairs * n * c, pairs * n
    print(f"\nm = {m} checkpoints × N = {n} samples × C = {c} classes: input {m * n * c * 8 / 1e6:.0f} MB, "
          f"{madds / 1e9:.2f} G multiply-adds, {logs / 1e9:.2f} G logs")
    print(f"{'case':8} {'seconds':>9} {'vs numpy':>9} {'Gmadd/s':>8} {'Glog/s':>8} {'peak MB':>8} "
          f"{'max |Δ|':>9}")
    t_ref = None
    for case in cases:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        out = subprocess.run([sys.executable, __file__, "--case", case, "--path", path, "--ref", ref],
                             capture_output=True, text=True, check=True, env=env)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        t = r["seconds"]
        t_ref = t if case == "numpy" else t_ref
        ratio = f"{t_ref / t:8.1f}×" if t_ref else f"{'—':>9}"
        print(f"{case:8} {t:9.3f} {ratio} {madds / t / 1e9:8.2f} {logs / t / 1e9:8.3f} "
              f"{r['peak_mb']:8.1f} {r['max_diff']:9.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=400)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--c", type=int, default=10)
    parser.add_argument("--large", action="store_true", help="add m = 1000 × N = 5000 (numba, torch)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of numba, torch and BLAS in every case (default: all cores)")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        _run_case(args.case, args.path, args.ref)
        return
    logs, madds = _floor()
    print(f"machine: {os.cpu_count()} cores, {args.threads} thread(s) per case; np.log {logs / 1e9:.3f} "
          f"Glog/s (1 thread); float64 matmul {madds / 1e9:.2f} Gmadd/s (default BLAS threads)")
    with tempfile.TemporaryDirectory() as tmp:
        # numpy first: it writes the reference the others are compared with
        _size(args.m, args.n, args.c, ("numpy", "einsum", "numba", "torch"), tmp, args.threads)
        if args.large:
            _size(1000, 5000, args.c, ("numba", "torch"), tmp, args.threads)


if __name__ == "__main__":
    main()
