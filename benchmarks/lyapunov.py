"""Rosenstein's largest Lyapunov exponent: dynlab.chaos.max_lyapunov vs nolds.lyap_r (issue 5).

    .venv/bin/python benchmarks/lyapunov.py [--sizes 2000,10000,50000] [--nolds-max 10000]

Each case runs in its own subprocess (fresh interpreter, so peak memory is that case's own): the
x-coordinate of the Hénon map (a = 1.4, b = 0.3) at N points, at matched parameters (emb_dim 2,
lag 1, min_tsep 5, trajectory_len 20, least squares over the whole curve: nolds ``fit="poly"``,
dynlab ``fit="all"``), plus dynlab with its automatic choices. Reported per case: wall time, the
exponent, and peak memory: tracemalloc's peak (numpy's allocations) and the growth of the process's
peak RSS during the call (ru_maxrss, which also sees scipy's KD-tree). nolds builds the full N×N
distance matrix (O(N²) time and memory: ≈ 1.7 GB at 10k points, ≈ 40 GB at 50k), so it is skipped
above ``--nolds-max``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np

MATCHED = {"emb_dim": 2, "lag": 1, "min_tsep": 5, "trajectory_len": 20}


def henon_x(n: int, burn: int = 100) -> np.ndarray:
    x, y, out = 0.1, 0.1, np.empty(n + burn)
    for i in range(n + burn):
        x, y = 1 - 1.4 * x * x + y, 0.3 * x
        out[i] = x
    return out[burn:]


def case(tool: str, n: int) -> dict:
    """One measurement, in this process (called in a subprocess by main)."""
    x = henon_x(n)
    if tool == "nolds":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nolds

        def fn():
            return nolds.lyap_r(x, fit="poly", **MATCHED)
    else:
        from dynlab import chaos

        chaos.max_lyapunov(x[:500], **MATCHED)  # import scipy.spatial outside the timing
        if tool == "dynlab":
            def fn():
                return chaos.max_lyapunov(x, fit="all", **MATCHED).value
        else:
            def fn():
                return chaos.max_lyapunov(x).value
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0  # kB on Linux
    return {"seconds": seconds, "value": float(value), "traced_mb": peak / 2**20,
            "rss_mb": rss / 1024}


def run_case(tool: str, n: int) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r}); " \
           f"import lyapunov as b; print(json.dumps(b.case({tool!r}, {n})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tool} at N={n} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000,50000")
    parser.add_argument("--nolds-max", type=int, default=10000,
                        help="largest N given to nolds (its N×N matrix needs ≈ 17·N² bytes)")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    print(f"Hénon x-series; matched parameters {MATCHED}, least squares over the whole curve")
    print(f"{'N':>7} {'tool':<14} {'time (s)':>9} {'λ₁':>8} {'traced MB':>10} {'ΔRSS MB':>9}")
    rows: dict[tuple[str, int], dict] = {}
    for n in sizes:
        for tool in ("dynlab", "dynlab (auto)", "nolds"):
            if tool == "nolds" and n > args.nolds_max:
                print(f"{n:>7} {tool:<14} skipped: its N×N distance matrix would need "
                      f"≈ {17 * n * n / 2**30:.0f} GB")
                continue
            r = rows[tool, n] = run_case("auto" if tool == "dynlab (auto)" else tool, n)
            print(f"{n:>7} {tool:<14} {r['seconds']:9.3f} {r['value']:8.4f} {r['traced_mb']:10.1f} "
                  f"{r['rss_mb']:9.1f}")
    print("\nratios (nolds / dynlab, matched parameters):")
    for n in sizes:
        if ("nolds", n) in rows:
            ours, theirs = rows["dynlab", n], rows["nolds", n]
            speed = theirs["seconds"] / ours["seconds"]
            print(f"  N={n:>6}: {speed:7.1f}× faster, {theirs['traced_mb'] / ours['traced_mb']:7.1f}× "
                  f"less traced memory; |Δλ₁|/λ₁ = "
                  f"{abs(ours['value'] - theirs['value']) / abs(theirs['value']):.1e}"
                  + (f"  (target ≥ 20×: {'PASS' if speed >= 20 else 'MISS'})" if n == 10000 else ""))
    print("\nscaling (time and traced memory per point, dynlab matched):")
    for n in sizes:
        r = rows["dynlab", n]
        print(f"  N={n:>6}: {1e6 * r['seconds'] / n:6.2f} µs/point, {r['traced_mb'] * 2**20 / n:7.1f} "
              "bytes/point")


if __name__ == "__main__":
    main()
