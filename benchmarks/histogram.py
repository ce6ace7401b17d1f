"""Histogram kernel benchmark (issue 4's kernel target: numba ≥ 4 × np.histogram on 100M float32).

    .venv/bin/python benchmarks/histogram.py [--n 100e6] [--bins 200] [--repeat 3]

Times, in one run and on the same data, np.histogram with explicit edges (the straightforward
way), np.histogram with bins/range (numpy's own uniform fast path), dynlab's numpy reference and
numba backend (warm: compiled once before timing), and the torch backend on the CPU. Prints the best
of ``--repeat`` and the ratios; all counts must agree exactly.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dynlab import geometry


def best(fn, repeat: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=100e6)
    parser.add_argument("--bins", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n = int(args.n)
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    edges = np.linspace(float(x.min()), float(x.max()), args.bins + 1)
    rows = x[None, :]
    geometry.histogram_counts(rows[:, :1000], edges, backend="numba")  # compile outside the timing

    cases = {
        "np.histogram(x, bins=edges)": lambda: np.histogram(x, bins=edges)[0],
        "np.histogram(x, bins=B, range=…)": lambda: np.histogram(
            x, bins=args.bins, range=(edges[0], edges[-1]))[0],
        "dynlab numba": lambda: geometry.histogram_counts(rows, edges, backend="numba")[0],
        "dynlab torch (CPU)": lambda: geometry.histogram_counts(rows, edges, backend="torch")[0],
    }
    results = {name: best(fn, args.repeat) for name, fn in cases.items()}
    reference = results["np.histogram(x, bins=edges)"][1]
    numba_s = results["dynlab numba"][0]
    print(f"{n:,} float32 values, {args.bins} uniform bins, best of {args.repeat}")
    for name, (seconds, counts) in results.items():
        same = "same counts" if np.array_equal(counts, reference) else "COUNTS DIFFER"
        print(f"  {name:<36} {seconds:7.3f} s  {x.nbytes / seconds / 1e9:5.2f} GB/s  "
              f"{seconds / numba_s:6.1f} × numba  ({same})")
    ratio = results["np.histogram(x, bins=edges)"][0] / numba_s
    print(f"\nnumba vs np.histogram(bins=edges): {ratio:.1f}×  (target ≥ 4×): "
          f"{'PASS' if ratio >= 4 else 'MISS'}")


if __name__ == "__main__":
    main()
