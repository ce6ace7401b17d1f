"""End-to-end benchmark of fisher-velocity (issue 4): the store, not the mathematics, should be
what a user waits for.

    .venv/bin/python benchmarks/fisher.py [--steps 100] [--params 10.5e6] [--out bench-output]
                                          [--repeat 3] [--skip-numpy]
    .venv/bin/python benchmarks/fisher.py --kernels      # the counting of one block, in memory

On a run of ``--steps`` checkpoints of a ``--params`` model in a dynlab store (generated once and
kept under ``--out``; a transformer-like state dict, see ``benchmarks/ingest.py``), in one run and
each case in its own process (so its peak RSS is its own):

- ``floor``: plain reading of every tensor at every step from the store, once, no analysis (the
  same block reads the analyzer makes, ``dynlab.analyzers._blocks``);
- ``numpy``: the straightforward way — checkpoint by checkpoint, a pass for each tensor's range,
  then ``np.histogram`` per tensor per step on fixed edges, the pooled histogram, and the
  information length from ``dynlab.geometry``;
- ``dynlab``: ``dynlab.run(store, "fisher-velocity", backend="numba")`` — two streaming passes,
  per layer and pooled, result written to the store;
- ``dynlab-pooled``: the same with ``-p per_layer=false`` (one histogram per value, not two);
- ``dynlab-short``: the same on a run of a quarter of the checkpoints (peak RSS must not grow
  with the number of checkpoints);
- ``dynlab-cli``: ``dynlab run fisher-velocity -r long --force`` through the CLI's own code, in
  the process (what a user types; the imports before the clock, as for the other cases).

Targets: dynlab ≤ 1.5 × floor; peak RSS independent of the number of checkpoints. The page cache
is warmed by one untimed read first, so every case reads from memory, as a re-analysis would.
The numpy case runs once; the others in ``--repeat`` interleaved rounds, and the verdict is the
median of the per-round ratios (this machine's load drifts by ±30 % within a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import model_shapes  # a sibling benchmark script

REPO = Path(__file__).resolve().parents[1]
CASES = ("floor", "numpy", "dynlab", "dynlab-pooled", "dynlab-short", "dynlab-cli")


def build_store(path: Path, steps: int, params: float) -> None:
    """Runs ``long`` (``steps`` checkpoints) and ``short`` (steps // 4): base + drift + noise."""
    import dynlab

    manifest = path.parent / "fisher-store.json"
    wanted = {"steps": steps, "params": params, "format": 2}  # 2: stores with ingest-time stats
    if path.exists() and manifest.exists() and json.loads(manifest.read_text()) == wanted:
        return
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    shapes = model_shapes(params)
    rng = np.random.default_rng(0)
    base = {k: rng.standard_normal(s, dtype=np.float32) * 0.02 for k, s in shapes.items()}
    store = dynlab.open_store(path, mode="a")
    started = time.perf_counter()
    for name, n in (("long", steps), ("short", max(2, steps // 4))):
        run = store.create_run(name)
        for i in range(n):
            s = np.float32(i / max(n - 1, 1))
            state = {k: b * (1 + 0.5 * s) + 0.01 * s + 0.002 * rng.standard_normal(b.shape, dtype=np.float32)
                     for k, b in base.items()}
            run.append(i, state)
            print(f"\r  {name}: {i + 1}/{n} checkpoints ({time.perf_counter() - started:.0f} s)",
                  end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    manifest.write_text(json.dumps(wanted))


def case_floor(store_path: Path) -> dict:
    import dynlab
    from dynlab.analyzers._blocks import blocks

    run = dynlab.open_store(store_path).run("long")
    total = 0
    for t in run.tensors:
        for b in blocks(run, t.name):
            total += b.values.nbytes
    return {"bytes": total}


def case_numpy(store_path: Path) -> dict:
    import dynlab
    from dynlab import geometry

    run = dynlab.open_store(store_path).run("long")
    names = [t.name for t in run.tensors]
    lo = dict.fromkeys(names, np.inf)
    hi = dict.fromkeys(names, -np.inf)
    for step in run.steps:
        ckpt = run.checkpoint(int(step))
        for name in names:
            lo[name] = min(lo[name], float(ckpt[name].min()))
            hi[name] = max(hi[name], float(ckpt[name].max()))
    sizes = {t.name: t.size for t in run.tensors}
    total = sum(sizes.values())

    def edges(a: float, b: float, n: int) -> np.ndarray:
        return np.linspace(a, b, max(1, min(200, int(n ** (1 / 3)))) + 1)

    layer_edges = {n: edges(lo[n], hi[n], sizes[n]) for n in names}
    pooled_edges = edges(min(lo.values()), max(hi.values()), total)
    pooled = np.zeros((len(run.steps), len(pooled_edges) - 1))
    layer = {n: np.zeros((len(run.steps), len(layer_edges[n]) - 1)) for n in names}
    for i, step in enumerate(run.steps):
        ckpt = run.checkpoint(int(step))
        for name in names:
            layer[name][i] = np.histogram(ckpt[name], bins=layer_edges[name])[0]
            pooled[i] += np.histogram(ckpt[name], bins=pooled_edges)[0]
    length = geometry.information_length(pooled / total)
    for name in names:
        geometry.information_length(layer[name] / sizes[name])
    return {"L_pooled_every_pair": float(length[-1])}


def case_dynlab(store_path: Path, run: str, per_layer: bool = True) -> None:
    import dynlab

    dynlab.run(store_path, ["fisher-velocity"], runs=[run], backend="numba", force=True,
               params={"per_layer": per_layer})


def dynlab_result(store_path: Path, run: str) -> dict:
    """The pooled L of the stored result, read after the clock stops (reading it back is not the
    analysis; its first use imports dask.distributed, ≈ 0.3 s, which the clock used to include)."""
    import dynlab

    ds = dynlab.results(store_path, "fisher-velocity", run)
    return {"L_pooled": float(ds["length"].sel(layer="all")[-1])}


def kernels(repeat: int = 9) -> None:
    """The counting of one block (32 MiB: 4 steps × 2.1M float32 values, 200 bins on the pooled and
    200 on the layer's edges): two ``histogram_counts`` calls vs one ``histogram_counts_pair``,
    on 1 and on all numba threads; median wall and CPU time of ``repeat`` runs."""
    import numba

    from dynlab.kernels.fisher import _numba

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(2**23, dtype=np.float32) * 0.02).reshape(4, -1)
    pooled, layer = np.linspace(-0.15, 0.16, 201), np.linspace(float(x.min()), float(x.max()), 201)
    ways = {"histogram_counts (pooled only)": lambda: _numba.histogram_counts(x, pooled),
            "histogram_counts twice": lambda: (_numba.histogram_counts(x, pooled),
                                               _numba.histogram_counts(x, layer)),
            "histogram_counts_pair": lambda: _numba.histogram_counts_pair(x, pooled, layer)}
    full = numba.get_num_threads()
    print(f"counting one block of {x.size / 1e6:.1f}M float32 values, median of {repeat}")
    print(f"{'':<32}{'threads':>8}{'wall ms':>9}{'CPU ms':>8}{'CPU ns/value':>14}")
    for threads in sorted({1, full}):
        numba.set_num_threads(threads)
        for name, way in ways.items():
            way()  # compiled and warm
            times = []
            for _ in range(repeat):
                started, cpu_started = time.perf_counter(), time.process_time()
                way()
                times.append((time.perf_counter() - started, time.process_time() - cpu_started))
            wall, cpu = np.median(times, axis=0)
            print(f"{name:<32}{threads:>8}{wall * 1e3:>9.1f}{cpu * 1e3:>8.1f}{cpu / x.size * 1e9:>14.2f}")
    numba.set_num_threads(full)


def child(case: str, store_path: Path) -> None:
    """Run one case in this process and print its time and peak RSS as JSON (imports and the
    numba compilation happen before the clock starts)."""
    import xarray  # noqa: F401  (a one-off ~1 s import: not what this measures)

    with contextlib.suppress(ImportError):  # xarray imports dask.array (≈ 0.4 s) when it builds
        import dask.array  # noqa: F401       # its first Dataset, if dask is installed

    import dynlab
    import dynlab.engine
    from dynlab import geometry
    from dynlab.cli import main as cli_main

    dynlab.open_store(store_path).run("long").steps  # noqa: B018  (opens zarr, reads metadata)
    if case.startswith("dynlab"):  # compile the numba kernels outside the timing
        from dynlab import geometry
        from dynlab.kernels.fisher import backend

        geometry.histogram_counts(np.zeros((1, 10), np.float32), np.linspace(0, 1, 5), backend="numba")
        backend("numba").histogram_counts_pair(np.zeros((1, 10), np.float32), np.linspace(0, 1, 5),
                                               np.linspace(0, 2, 3))
        backend("numba").row_moments(np.zeros((1, 10), np.float32))
    started, cpu_started = time.perf_counter(), os.times()
    if case == "floor":
        info = case_floor(store_path)
    elif case == "numpy":
        info = case_numpy(store_path)
    elif case == "dynlab-cli":
        run = "long"
        cli_main(["run", "fisher-velocity", "-s", str(store_path), "-r", run, "--force"],
                 standalone_mode=False)
    else:
        run = "short" if case == "dynlab-short" else "long"
        case_dynlab(store_path, run, per_layer=case != "dynlab-pooled")
    seconds, cpu = time.perf_counter() - started, os.times()
    cpu_seconds = (cpu.user - cpu_started.user) + (cpu.system - cpu_started.system)
    if case.startswith("dynlab"):
        read_started = time.perf_counter()
        info = {**dynlab_result(store_path, run), "result_read_s": time.perf_counter() - read_started}
    print(json.dumps({"case": case, "seconds": seconds, "cpu_seconds": cpu_seconds,
                      "rss_mib": peak_rss_mib(), **info}))


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not inherit the parent's peak
    across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--params", type=float, default=10.5e6)
    parser.add_argument("--out", type=Path, default=REPO / "bench-output")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved rounds of the fast cases (the verdict is their median)")
    parser.add_argument("--skip-numpy", action="store_true",
                        help="leave out the slow numpy case (about a minute)")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--kernels", action="store_true",
                        help="only time the counting kernels on one block in memory (no store)")
    args = parser.parse_args(argv)
    if args.kernels:
        kernels()
        return
    store_path = args.out / "fisher.zarr"
    if args.case:
        child(args.case, store_path)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    build_store(store_path, args.steps, args.params)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run_case(case: str) -> dict:
        out = subprocess.run([sys.executable, __file__, "--out", str(args.out), "--case", case],
                             check=True, capture_output=True, text=True, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])

    warm = run_case("floor")  # untimed: fills the page cache
    # The slow numpy case once; the others in ``--repeat`` interleaved rounds (floor, dynlab, …),
    # so that a drift in the machine's load hits every case alike: the verdict is the median of
    # the per-round ratios dynlab / floor, with their range.
    rounds = [{"numpy": run_case("numpy")}] if not args.skip_numpy else [{}]
    for i in range(args.repeat):
        if i:
            rounds.append({})
        rounds[-1].update({case: run_case(case) for case in CASES if case != "numpy"})
    results = {case: _median_result([r[case] for r in rounds if case in r]) for case in CASES
               if any(case in r for r in rounds)}
    floor = results["floor"]["seconds"]
    gb = warm["bytes"] / 1e9
    print(f"\nfisher-velocity end to end: {args.steps} checkpoints × {args.params / 1e6:.1f}M params "
          f"({gb:.2f} GB of float32), {os.cpu_count()} cores, median of {args.repeat} rounds")
    print(f"{'case':<14}{'seconds':>9}{'CPU s':>8}{'GB/s':>8}{'× floor':>9}{'peak RSS MiB':>14}")
    for case, r in results.items():
        rate = gb / r["seconds"] if case != "dynlab-short" else gb / 4 / r["seconds"]
        print(f"{case:<14}{r['seconds']:>9.2f}{r['cpu_seconds']:>8.1f}{rate:>8.2f}"
              f"{r['seconds'] / floor:>9.2f}{r['rss_mib']:>14.0f}")
    for case in ("dynlab", "dynlab-pooled"):
        ratios = [r[case]["seconds"] / r["floor"]["seconds"] for r in rounds]
        print(f"{case} / floor per round: " + ", ".join(f"{x:.2f}" for x in ratios)
              + f"; median {np.median(ratios):.2f}")
    ratio = float(np.median([r["dynlab"]["seconds"] / r["floor"]["seconds"] for r in rounds]))
    rss_growth = results["dynlab"]["rss_mib"] - results["dynlab-short"]["rss_mib"]
    if "numpy" in results:
        speedup = results["numpy"]["seconds"] / results["dynlab"]["seconds"]
        print(f"\ndynlab vs the straightforward numpy way: {speedup:.1f}× faster")
    print(f"dynlab / floor (median of the rounds): {ratio:.2f} (target ≤ 1.5) "
          f"{'PASS' if ratio <= 1.5 else 'MISS'}")
    print(f"peak RSS, {args.steps} vs {max(2, args.steps // 4)} checkpoints: "
          f"{results['dynlab']['rss_mib']:.0f} vs {results['dynlab-short']['rss_mib']:.0f} MiB "
          f"({rss_growth:+.0f} MiB)")
    numpy_l = (f"; numpy every pair {results['numpy']['L_pooled_every_pair']:.3f}"
               if "numpy" in results else "")
    print(f"pooled L: dynlab (adaptive) {results['dynlab']['L_pooled']:.3f}{numpy_l}")


def _median_result(runs: list[dict]) -> dict:
    """Per key, the median over the rounds of one case (its numbers; the rest from the first)."""
    out = dict(runs[0])
    for key in ("seconds", "cpu_seconds", "rss_mib"):
        out[key] = float(np.median([r[key] for r in runs]))
    return out

if __name__ == "__main__":
    main()
