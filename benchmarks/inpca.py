"""Benchmark of the InPCA distance matrix — per-sample Bhattacharyya distances between m checkpoints
(METHODS.md §2, issue 7): the heaviest kernel of dynlab.

    .venv/bin/python benchmarks/inpca.py [--quick] [--threads T] [--repeat 3] [--cases numpy,numba]

P (m, N, C) random class probabilities (Dirichlet(½), seeded), the symmetric m × m matrix d_B;
default m = 1,000 checkpoints × N = 5,000 samples × C = 10 classes (``--quick``: 200 × 1,000).
Each case runs in its own process (so its peak RSS is its own; numba compiled and torch loaded
before the clock starts) and is timed ``--repeat`` times (median; einsum once, it is slow):

- ``einsum``: the naive vectorised way — ``np.einsum('inc,jnc->ijn')`` on blocks of 64 × 64
  checkpoints × all samples, then clip, log and mean;
- ``numpy``: the reference backend, the best numpy we know (√P once per block of samples, batched
  ``matmul`` of 128 × 128 checkpoint tiles, clip, log);
- ``numba``: the CPU backend (parallel tiles, register-blocked multiply-adds, few logs);
- ``torch``: the torch backend on the CPU (batched matmul, one log per 24 samples).

The work of a symmetric matrix: m(m+1)/2 · N · C multiply-adds and m(m+1)/2 · N logarithms (the
reference takes every one of those logs; torch one per 24 samples, numba one per 240, see
docs/inpca.md). Printed per case: seconds, ratios to einsum and to the numpy reference, the time
as a multiple of the floor, multiply-adds/s and logs/s (equivalent: the counts above over the
time), the peak RSS added by the case and the largest difference from the numpy reference.

The floor is the machine's own rates, measured in a process of its own with the cases' threads:
``np.log`` on float64 (1 and T Python threads at once, numpy releases the GIL; the better of the
two counts), a 1500² float64 matrix product (BLAS, T threads), and products of the same shapes as
this kernel: a batch of (m × C)·(C × m) products, one per sample (what BLAS achieves at inner
dimension C), and the same with the numpy reference's 128 × 128 tiles (printed, not a target):

    floor         = logs / log-rate + multiply-adds / matmul-rate
    batched floor = logs / log-rate + multiply-adds / batched-matmul-rate
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

CASES = ("numpy", "einsum", "numba", "torch")
TARGETS = {"einsum": 10.0, "numpy": 2.0, "floor": 3.0}  # numba ≥ 10× einsum, ≥ 2× numpy, ≤ 3× floor


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


def _run_case(case: str, path: str, ref_path: str, repeat: int) -> dict:
    """In a child process: time one case on the array at ``path``."""
    P = np.load(path)
    if case == "einsum":
        fn = _einsum
        repeat = 1
    else:
        from dynlab.kernels.bhattacharyya import bhattacharyya_matrix

        if case == "torch":
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

        def fn(x):
            return bhattacharyya_matrix(x, backend=case)
    fn(np.ascontiguousarray(P[:8, :50]))  # compile / load before the clock
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        D = fn(P)
        seconds.append(time.perf_counter() - t0)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    err = float(np.abs(D - np.load(ref_path)).max()) if os.path.exists(ref_path) else None
    if case == "numpy" and not os.path.exists(ref_path):
        np.save(ref_path, D)
    return {"case": case, "seconds": seconds, "peak_mb": peak / 1024, "max_diff": err}


def _log_rate(threads: int, size: int = 4_000_000, reps: int = 3, trials: int = 3) -> float:
    """Logarithms per second of ``np.log`` on float64 in [1e-12, 1], ``threads`` at once (the best
    of ``trials``: the machine is shared)."""
    rng = np.random.default_rng(0)
    xs = [rng.uniform(1e-12, 1.0, size) for _ in range(threads)]
    ys = [np.log(x) for x in xs]

    def work(k: int) -> None:
        for _ in range(reps):
            np.log(xs[k], out=ys[k])

    best = float("inf")
    for _ in range(trials):
        pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        t0 = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return threads * reps * size / best


def _best_rate(fn, work: float, reps: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return work / best


def _run_floor(m: int, c: int, threads: int) -> dict:
    """In a child process (BLAS threads set by the parent): the machine's rates."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1500, 1500))
    matmul = _best_rate(lambda: a @ a, 1500.0**3)
    rates = {}
    for name, rows, tn in (("batched", m, max(1, min(32, (32 << 20) // (8 * m * m)))),  # ≤ 32 MB out
                           ("tiled", min(m, 128), 32)):  # the numpy reference's tiles
        x = rng.uniform(0, 1, (tn, rows, c))
        y = np.ascontiguousarray(x.transpose(0, 2, 1))
        out = np.empty((tn, rows, rows))
        rates[name] = _best_rate(lambda x=x, y=y, out=out: np.matmul(x, y, out=out),
                                 float(tn) * rows * rows * c)
    return {"log_1": _log_rate(1), "log_t": _log_rate(threads), "matmul": matmul, **rates}


def _child(args: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child {args[:2]} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _size(m: int, n: int, c: int, cases: list[str], threads: int, repeat: int) -> None:
    pairs = m * (m + 1) / 2
    madds, logs = pairs * n * c, pairs * n
    print(f"m = {m:,} checkpoints × N = {n:,} samples × C = {c} classes: input {m * n * c * 8 / 1e6:.0f} MB; "
          f"symmetric: {madds / 1e9:.2f} G multiply-adds, {logs / 1e9:.3f} G logs")
    f = _child(["--floor", str(m), str(c)], threads)
    log_rate = max(f["log_1"], f["log_t"])  # threads do not always help on a shared machine
    floor = logs / log_rate + madds / f["matmul"]
    floor_b = logs / log_rate + madds / f["batched"]
    tile = min(m, 128)
    print(f"machine: {os.cpu_count()} cores, {threads} thread(s) per case, load average "
          f"{os.getloadavg()[0]:.1f}; np.log {f['log_1'] / 1e9:.3f} Glog/s (1 thread), "
          f"{f['log_t'] / 1e9:.3f} Glog/s ({threads} threads); float64 matmul 1500² "
          f"{f['matmul'] / 1e9:.1f} Gmadd/s; batched matmul, one product per sample: "
          f"({m}×{c})·({c}×{m}) {f['batched'] / 1e9:.2f} Gmadd/s, "
          f"({tile}×{c})·({c}×{tile}) {f['tiled'] / 1e9:.2f} Gmadd/s")
    t_log = logs / log_rate
    floor_t = t_log + madds / f["tiled"]
    print(f"floor: {t_log:.2f} s of logs + {madds / f['matmul']:.2f} s of matmul = {floor:.2f} s; "
          f"batched floor: {t_log:.2f} + {madds / f['batched']:.2f} = {floor_b:.2f} s "
          f"(with {tile}² tiles: {t_log:.2f} + {madds / f['tiled']:.2f} = {floor_t:.2f} s)")
    print(f"{'case':7} {'median s':>9} {'min s':>8} {'vs einsum':>10} {'vs numpy':>9} {'× floor':>8} "
          f"{'Gmadd/s':>8} {'Glog/s':>7} {'peak MB':>8} {'max |Δ|':>8}")
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        P = np.empty((m, n, c))
        for i in range(m):  # row by row: no large temporaries in the parent
            P[i] = rng.dirichlet(np.full(c, 0.5), size=n)
        path, ref = os.path.join(tmp, "P.npy"), os.path.join(tmp, "D.npy")
        np.save(path, P)
        del P
        for case in sorted(cases, key=CASES.index):  # numpy first: it writes the reference
            r = _child(["--case", case, path, ref, str(repeat)], threads)
            t = times[case] = float(np.median(r["seconds"]))
            ratio = {k: f"{times[k] / t:.1f}×" if k in times else "—" for k in ("einsum", "numpy")}
            diff = "—" if r["max_diff"] is None else f"{r['max_diff']:.1e}"
            print(f"{case:7} {t:9.2f} {min(r['seconds']):8.2f} {ratio['einsum']:>10} {ratio['numpy']:>9} "
                  f"{t / floor:7.2f}× {madds / t / 1e9:8.2f} {logs / t / 1e9:7.3f} {r['peak_mb']:8.0f} "
                  f"{diff:>8}", flush=True)
    if "numba" in times:
        t = times["numba"]
        checks = [f"≥ {TARGETS[k]:.0f}× {k}: {times[k] / t:.1f}×" for k in ("einsum", "numpy") if k in times]
        checks.append(f"≤ {TARGETS['floor']:.0f}× floor: {t / floor:.2f}× (batched floor {t / floor_b:.2f}×)")
        print("numba targets: " + "; ".join(checks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--c", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="m = 200 × N = 1,000 (seconds, not minutes)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of numba, torch, BLAS and the log floor (default: all cores)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per case (median); einsum once")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {CASES}")
    parser.add_argument("--case", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--floor", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        case, path, ref, repeat = args.case
        print(json.dumps(_run_case(case, path, ref, int(repeat))))
        return
    if args.floor:
        print(json.dumps(_run_floor(*args.floor, args.threads)))
        return
    cases = [x for x in args.cases.split(",") if x]
    if not cases or not set(cases) <= set(CASES):
        parser.error(f"--cases must name some of {CASES}")
    m, n = (200, 1000) if args.quick else (args.m, args.n)
    _size(m, n, args.c, cases, args.threads, args.repeat)


if __name__ == "__main__":
    main()
