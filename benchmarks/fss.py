"""Finite-size-scaling fit benchmark (issue 8): dynlab ``collapse`` vs pyfssa ``autoscale``.

    .venv/bin/python benchmarks/fss.py [--n 41] [--noise 0.01] [--n-boot 20] [--seed 0]

The data of METHODS.md §9 (f(x) = 1/(1+e^(−x)), L = 10, 100, 1000, ρ on ``--n`` points in
[0.9, 1.1], truth (ρ_c, ν, ζ) = (1, 2, 0), ``--noise`` relative errors), fitted by both from several
starts, near and far. Prints, per start, the time and the achieved quality S of each, and the
fitted parameters; then the targets: dynlab's S ≤ pyfssa's best S from every start, ≤ 2 s per fit
(numba compiled before timing, bootstrap included). Also the time of one S evaluation each
(dynlab numba, dynlab numpy, pyfssa) and the peak traced memory of one dynlab fit.

pyfssa 0.7.6 needs three shims on numpy 2 / scipy 1.17, applied here without editing it.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import types
import warnings

import numpy as np

from dynlab import scaling

STARTS = [(1.0, 2.0, 0.0), (0.99, 2.1, 0.05), (0.95, 1.8, 0.1), (1.05, 2.5, -0.2), (0.92, 1.0, 0.5),
          (1.08, 4.0, -0.5)]


def import_fssa():
    import scipy.optimize._optimize as sopt

    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
    np.int = int
    stand_in = types.ModuleType("scipy.optimize.optimize")
    stand_in.OptimizeResult = sopt.OptimizeResult
    stand_in._status_message = sopt._status_message
    stand_in.wrap_function = sopt._wrap_scalar_function
    sys.modules["scipy.optimize.optimize"] = stand_in
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import fssa
    return fssa


def data(n: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    sizes = np.array([10.0, 100.0, 1000.0])
    rho = np.linspace(0.9, 1.1, n)
    a = 1 / (1 + np.exp(-np.sqrt(sizes)[:, None] * (rho - 1.0)))
    da = noise * a
    return sizes, rho, a + rng.standard_normal(a.shape) * da, da


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=41)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--n-boot", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fssa = import_fssa()
    sizes, rho, a, da = data(args.n, args.noise, args.seed)
    truth = scaling.quality(sizes, rho, a, da, x_c=1.0, nu=2.0, zeta=0.0)
    scaling.collapse(sizes, rho, a, da, x_c0=1.0, nu0=2.0, n_boot=0)  # compile outside the timing

    sd = fssa.scaledata(sizes, rho, a, da, 1.01, 1.9, 0.05)
    reps = 200
    t_nb = timed(lambda: [scaling.quality(sizes, rho, a, da, x_c=1.01, nu=1.9, zeta=0.05)
                          for _ in range(reps)])[0] / reps
    t_np = timed(lambda: [scaling.quality(sizes, rho, a, da, x_c=1.01, nu=1.9, zeta=0.05, backend="numpy")
                          for _ in range(reps)])[0] / reps
    t_fs = timed(lambda: [fssa.quality(*sd) for _ in range(20)])[0] / 20
    # what a fit pays per evaluation: the data prepared once (validation, sorting, NaN removal)
    prep = {b: scaling._prepare(sizes, rho, a, da, b) for b in ("numba", "numpy")}
    p = (1.01, 1.9, 0.05)
    t_in = {b: timed(lambda b=b: [scaling._quality(prep[b], p) for _ in range(reps)])[0] / reps for b in prep}
    print(f"3 sizes × {args.n} points, {args.noise:.0%} noise, seed {args.seed}; "
          f"S at the truth = {truth:.3f}")
    print(f"one S call (public quality(), validates each time): dynlab numba {t_nb * 1e6:.0f} µs, "
          f"numpy {t_np * 1e6:.0f} µs; pyfssa quality {t_fs * 1e6:.0f} µs")
    print(f"one S evaluation inside a fit: dynlab numba {t_in['numba'] * 1e6:.1f} µs, numpy "
          f"{t_in['numpy'] * 1e6:.0f} µs  (pyfssa / dynlab: {t_fs / t_in['numba']:.0f}× numba, "
          f"{t_fs / t_in['numpy']:.0f}× numpy)\n")
    print(f"{'start (ρc, ν, ζ)':<22}{'pyfssa s':>9}{'S':>9}   {'fit':<24}{'dynlab s':>9}{'S':>9}   fit")
    rows = []
    for start in STARTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tf, rf = timed(lambda s=start: fssa.autoscale(sizes, rho, a, da, *s))
        td, rd = timed(lambda s=start: scaling.collapse(sizes, rho, a, da, x_c0=s[0], nu0=s[1], zeta0=s[2],
                                                        n_boot=args.n_boot, seed=args.seed))
        rows.append((tf, float(rf.fun), td, rd.quality))
        fit_f = "({:.4f}, {:.3f}, {:.3f})".format(*rf.x)
        fit_d = f"({rd.x_c:.4f}, {rd.nu:.3f}, {rd.zeta:.3f}) ± ({rd.dx_c:.4f}, {rd.dnu:.3f}, {rd.dzeta:.3f})"
        print(f"{start!s:<22}{tf:9.2f}{rf.fun:9.3f}   {fit_f:<24}{td:9.2f}{rd.quality:9.3f}   {fit_d}")
    tracemalloc.start()
    scaling.collapse(sizes, rho, a, da, x_c0=0.95, nu0=1.8, zeta0=0.1, n_boot=args.n_boot)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    best_fssa = min(r[1] for r in rows)
    worst_ours = max(r[3] for r in rows)
    slowest = max(r[2] for r in rows)
    print(f"\npeak traced memory of one dynlab fit: {peak / 1e6:.1f} MB")
    print(f"dynlab worst S {worst_ours:.4f} vs pyfssa best S {best_fssa:.4f} (target ≤): "
          f"{'PASS' if worst_ours <= best_fssa + 1e-9 else 'MISS'}")
    print(f"dynlab slowest fit {slowest:.2f} s (target ≤ 2 s, bootstrap of {args.n_boot} included): "
          f"{'PASS' if slowest <= 2 else 'MISS'}")
    print(f"total time: pyfssa {sum(r[0] for r in rows):.1f} s, dynlab {sum(r[2] for r in rows):.1f} s")


if __name__ == "__main__":
    main()
