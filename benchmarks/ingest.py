"""Ingest benchmark: ``dynlab ingest`` throughput against raw reads, and the ingest's peak memory.

Targets (the ingest issue):

- throughput: ingest MB/s ≥ 0.5 × the raw read MB/s of the same files;
- memory: peak RSS of the ingest ≤ 3 × the largest tensor + 200 MB (readers stream tensor by
  tensor, so memory follows the largest tensor, not the checkpoint).

One run generates ``--n`` checkpoints of a transformer-like float32 state dict of ``--params``
parameters (the embedding is the largest tensor, about half the parameters), then

a. reads every file in 16 MiB blocks into a preallocated buffer (timed after one untimed pass
   that warms the page cache: the number the ingest is held to). For reference it also times
   a cold-cache read (the files flushed and evicted with ``posix_fadvise``: the disk) and a plain
   copy of the files (read + write in 16 MiB blocks: what storing these bytes costs here);
b. runs ``dynlab ingest`` through the CLI in a subprocess into a fresh store (wall clock);
c. polls the RSS of that subprocess tree every 20 ms (and reads ``ru_maxrss`` when it ends);

and prints a table with a verdict per target. ``--profile [K]`` then breaks the ingest's time
down on K checkpoints, in-process: cProfile of dynlab's functions, per-stage rates on the largest
tensor, the ingest rate under other compressors and without hashing or without the tensor writes,
and the peak of traced allocations. Generated files live in ``bench-output/`` and are removed
unless ``--keep`` (a kept set with the same parameters is reused by the next run).

    .venv/bin/python benchmarks/ingest.py [--n 50] [--params 25e6] [--format torch] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
RUN = "bench"
BLOCK = 16 * 2**20
POLL_SECONDS = 0.02
MB = 1e6
SUFFIX = {"torch": ".pt", "safetensors": ".safetensors", "numpy": ".npz"}


# ---------------------------------------------------------------------------------- the model

def model_shapes(params: float) -> dict[str, tuple[int, ...]]:
    """A transformer-like state dict of about ``params`` parameters, in source order.

    d_model 512; the token embedding holds about half the parameters (12.8M at 25M: the largest
    tensor), pre-norm blocks (qkv, out, 4x MLP, two norms) the rest.
    """
    d, ff = 512, 2048
    vocab = max(1000, round(params / 2 / d))
    block = 3 * d * d + 3 * d + d * d + d + ff * d + ff + d * ff + d + 4 * d
    layers = max(1, math.ceil((params - vocab * d - 2 * d) / block))
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (vocab, d)}
    for i in range(layers):
        p = f"blocks.{i}."
        shapes |= {p + "ln1.weight": (d,), p + "ln1.bias": (d,),
                   p + "attn.qkv.weight": (3 * d, d), p + "attn.qkv.bias": (3 * d,),
                   p + "attn.out.weight": (d, d), p + "attn.out.bias": (d,),
                   p + "ln2.weight": (d,), p + "ln2.bias": (d,),
                   p + "mlp.up.weight": (ff, d), p + "mlp.up.bias": (ff,),
                   p + "mlp.down.weight": (d, ff), p + "mlp.down.bias": (d,)}
    shapes |= {"norm.weight": (d,), "norm.bias": (d,)}
    return shapes


def generate(directory: Path, n: int, shapes: dict[str, tuple[int, ...]], fmt: str,
             seed: int) -> list[Path]:
    """``n`` checkpoints, distinct per step: base + step × drift (float32, like a training run)."""
    rng = np.random.default_rng(seed)
    base = {k: rng.standard_normal(s, dtype=np.float32) * 0.02 for k, s in shapes.items()}
    drift = {k: rng.standard_normal(s, dtype=np.float32) * 1e-4 for k, s in shapes.items()}
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    started = time.perf_counter()
    for i in range(n):
        step = 100 * (i + 1)
        state = {k: base[k] + np.float32(i) * drift[k] for k in shapes}
        path = directory / f"ckpt_{step:07d}{SUFFIX[fmt]}"
        _save(path, state, fmt)
        files.append(path)
        print(f"\r  generated {i + 1}/{n} ({time.perf_counter() - started:.0f} s)", end="",
              file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return files


def _save(path: Path, state: dict[str, np.ndarray], fmt: str) -> None:
    if fmt == "torch":
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    elif fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file(state, str(path))
    else:
        np.savez(path, **state)


def inputs(out: Path, n: int, params: float, fmt: str, seed: int) -> tuple[Path, list[Path]]:
    """The checkpoint directory: reused if a kept one matches the parameters, else generated."""
    directory = out / "ckpts" / RUN
    manifest = out / "ckpts" / "manifest.json"
    wanted = {"n": n, "params": params, "format": fmt, "seed": seed}
    if manifest.is_file() and json.loads(manifest.read_text()) == wanted:
        files = sorted(directory.glob(f"*{SUFFIX[fmt]}"))
        if len(files) == n:
            print(f"  reusing {n} kept checkpoints in {directory}", file=sys.stderr)
            return directory, files
    shutil.rmtree(out / "ckpts", ignore_errors=True)
    files = generate(directory, n, model_shapes(params), fmt, seed)
    manifest.write_text(json.dumps(wanted))
    return directory, files


# --------------------------------------------------------------------------------- measuring

def raw_read(files: list[Path]) -> tuple[int, float]:
    """Bytes and seconds to read every file in 16 MiB blocks into one preallocated buffer."""
    buffer = memoryview(bytearray(BLOCK))
    total = 0
    started = time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while True:
                got = f.readinto(buffer)
                if not got:
                    break
                total += got
    return total, time.perf_counter() - started


def raw_copy(files: list[Path], dest: Path) -> float:
    """Seconds to copy every file into ``dest`` in 16 MiB blocks: what writing these bytes
    costs on this disk, the ceiling of any ingest that stores them uncompressed."""
    dest.mkdir(parents=True, exist_ok=True)
    buffer = memoryview(bytearray(BLOCK))
    started = time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as f, open(dest / path.name, "wb", buffering=0) as g:
            while got := f.readinto(buffer):
                g.write(buffer[:got])
    seconds = time.perf_counter() - started
    shutil.rmtree(dest)  # its dirty pages are dropped, not written back behind the ingest
    os.sync()
    return seconds


def evict(files: list[Path]) -> bool:
    """Flush the files to disk and drop them from the page cache (only these files: harmless to
    anything else on the machine). False where posix_fadvise is unavailable."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def cli_command() -> list[str]:
    if (REPO / "dynlab" / "cli" / "__main__.py").is_file():
        return [sys.executable, "-m", "dynlab.cli"]
    return [sys.executable, "-c", "from dynlab.cli import main; main()"]


def run_ingest(source: Path, store: Path, fmt: str) -> dict[str, float | str]:
    """Wall time, peak RSS (polled tree and ru_maxrss) and output of one CLI ingest."""
    import psutil

    shutil.rmtree(store, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.Popen([*cli_command(), "ingest", str(source), "--store", str(store),
                             "--format", fmt], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    peak_rss = peak_anon = 0
    try:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            rss = anon = 0
            with contextlib.suppress(psutil.Error):
                for p in [root, *root.children(recursive=True)]:
                    mem = p.memory_info()
                    rss += mem.rss
                    anon += mem.rss - mem.shared  # resident minus file-backed/shared pages
            peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
            time.sleep(POLL_SECONDS)
        stdout, stderr = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"ingest failed ({proc.returncode}):\n{stderr}")
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    return {"seconds": seconds, "peak_rss": peak_rss, "peak_anon": peak_anon,
            "ru_maxrss": maxrss if maxrss > before * 1024 else float("nan"),
            "stdout": stdout.strip(), "stderr": stderr.strip()}


def import_baseline(fmt: str) -> int:
    """Resident memory of a fresh interpreter after the imports an ingest of ``fmt`` needs
    (VmHWM of the process itself: ``ru_maxrss`` would include the parent's pages at fork)."""
    imports = "import dynlab.api, dynlab.cli" + (", torch" if fmt == "torch" else "")
    code = (f"{imports}\nfor line in open('/proc/self/status'):\n"
            "    if line.startswith('VmHWM'): print(int(line.split()[1]) * 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def verify(store: Path, files: list[Path], fmt: str) -> None:
    """The store holds every checkpoint; the last one equals its source bit for bit."""
    from dynlab.ingestion import open_checkpoint
    from dynlab.store import open_store

    run = open_store(store).run(RUN)
    assert len(run) == len(files), f"{len(run)} checkpoints in the store, {len(files)} files"
    stored = run.checkpoint(int(run.steps[-1]))
    ckpt = open_checkpoint(files[-1], fmt)
    try:
        for name, array, *_ in ckpt.tensors():
            assert stored[name].tobytes() == np.asarray(array).tobytes(), name
    finally:
        ckpt.close()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# ------------------------------------------------------------------------------- profiling

@contextlib.contextmanager
def patched_compressors(codecs) -> Iterator[None]:
    """Run the ingest with other compressors (monkeypatches dynlab.store._layout.compressors)."""
    from dynlab.store import _layout

    saved = _layout.compressors
    _layout.compressors = lambda: codecs
    try:
        yield
    finally:
        _layout.compressors = saved


def _ingest_in_process(files: list[Path], store: Path, fmt: str) -> float:
    from dynlab.api import ingest

    shutil.rmtree(store, ignore_errors=True)
    started = time.perf_counter()
    ingest(files, store, run=RUN, format=fmt)
    return time.perf_counter() - started


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def profile(files: list[Path], fmt: str, work: Path, k: int) -> None:
    """Where an ingest's time and memory go, on the first ``k`` checkpoints, in-process."""
    import cProfile
    import pstats
    import tracemalloc

    import zarr
    from zarr.codecs import BloscCodec, ZstdCodec

    from dynlab.ingestion import open_checkpoint
    from dynlab.store import _layout
    from dynlab.store._hash import tensor_hash

    subset = files[:k]
    nbytes = sum(p.stat().st_size for p in subset)
    store = work / "profile.zarr"
    _ingest_in_process(subset[:1], store, fmt)  # warm imports and caches

    print(f"\n## cProfile: in-process ingest of {k} checkpoints ({nbytes / MB:,.0f} MB)")
    prof = cProfile.Profile()
    shutil.rmtree(store, ignore_errors=True)
    prof.enable()
    seconds = _ingest_in_process(subset, store, fmt)
    prof.disable()
    print(f"{seconds:.2f} s, {nbytes / MB / seconds:.0f} MB/s. Wall time (cumulative) of dynlab's "
          "functions in the main thread;\nzarr encodes and writes in its own threads, so a "
          "blocking zarr call shows as time in its dynlab caller.")
    stats = pstats.Stats(prof)
    rows = [(ct, tt, nc, f"{Path(file).parent.name}/{Path(file).name}:{line}({func})")
            for (file, line, func), (_, nc, tt, ct, _) in stats.stats.items()
            if "/dynlab/" in file and "/ingest/_ingest.py" not in file]
    print(f"  {'cumulative':>10} {'own':>7} {'calls':>6}  function")
    for ct, tt, nc, where in sorted(rows, reverse=True)[:14]:
        print(f"  {ct:8.2f} s {tt:7.2f} {nc:6d}  {where}")

    print("\n## per-stage rates on the largest tensor (best of 3, warm cache)")
    ckpt = open_checkpoint(files[0], fmt)
    try:
        items = [(n, np.asarray(a)) for n, a, *_ in ckpt.tensors()]
        name, big = max(items, key=lambda item: item[1].nbytes)
        big = big.copy()  # in memory, not a memory map
        del items
    finally:
        ckpt.close()
    size = big.nbytes / MB
    print(f"  {name}: {big.shape} {big.dtype}, {size:.1f} MB, "
          f"{_layout.row_chunks(big.shape, big.itemsize)} chunks")

    def rate(fn, repeat: int = 3) -> float:
        return size / min(_timed(fn) for _ in range(repeat))

    def zarr_row(codecs, chunks=None):
        group = zarr.open_group(str(work / "stage.zarr"), mode="w")
        arr = group.create_array("x", shape=(4, *big.shape), dtype=big.dtype, fill_value=0,
                                 chunks=chunks or _layout.row_chunks(big.shape, big.itemsize),
                                 compressors=codecs)
        return lambda: arr.__setitem__(0, big)

    def raw_write():
        tmp = work / "raw.partial"
        with open(tmp, "wb") as f:
            f.write(memoryview(big).cast("B"))
        os.replace(tmp, work / "raw")

    current = _layout.compressors()
    blosc = _numcodecs_blosc(current)
    chunk_rows = _layout.row_chunks(big.shape, big.itemsize)[1]
    stages = [
        ("np.isfinite(a).all()", lambda: np.isfinite(big).all()),
        ("tensor_hash (xxh3-64)", lambda: tensor_hash(big)),
        ("np.copyto (memory bandwidth)", lambda: np.copyto(np.empty_like(big), big)),
        ("raw file write (temp file + rename)", raw_write),
        ("zarr row write, current compressors", zarr_row(current)),
        ("zarr row write, no compression", zarr_row(())),
        ("zarr row write, no compression, 1 chunk/row", zarr_row((), (1, *big.shape))),
    ]
    if blosc is not None:
        stages.insert(3, ("Blosc encode alone (numcodecs, per chunk)", lambda: [
            blosc.encode(big[i:i + chunk_rows]) for i in range(0, len(big), chunk_rows)]))
    for label, fn in stages:
        print(f"  {label:<46} {rate(fn):8,.0f} MB/s")
    reader_s = min(_timed(lambda: _stream(files[1], fmt)) for _ in range(2))
    print(f"  {'reader: stream one checkpoint, touch pages':<46} "
          f"{files[1].stat().st_size / MB / reader_s:8,.0f} MB/s")
    shutil.rmtree(work / "stage.zarr", ignore_errors=True)

    print(f"\n## ingest rate by variant (in-process, the same {k} checkpoints, best of 2)")
    configs = {
        "BloscCodec lz4 clevel=1 shuffle": (BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"),),
        "BloscCodec lz4 clevel=1 noshuffle": (BloscCodec(cname="lz4", clevel=1,
                                                         shuffle="noshuffle"),),
        "BloscCodec zstd clevel=1 shuffle": (BloscCodec(cname="zstd", clevel=1,
                                                        shuffle="shuffle"),),
        "ZstdCodec level=1": (ZstdCodec(level=1),),
        "no compression": (),
    }
    print(f"  current compressors: {current}")
    variants: list[tuple[str, contextlib.AbstractContextManager]] = [
        ("as is", contextlib.nullcontext()),
        *((f"compressors: {label}", patched_compressors(c)) for label, c in configs.items()),
        ("no content hashing (tensor_hash stubbed)", _patched_hash()),
        ("no params writes at all (read, hash, check, commit)", _no_param_writes()),
    ]
    for label, patch in variants:
        with patch:
            seconds = min(_ingest_in_process(subset, store, fmt) for _ in range(2))
        print(f"  {label:<52} {nbytes / MB / seconds:6.0f} MB/s   store/input size "
              f"{_dir_bytes(store) / nbytes:5.2f}")

    print("\n## memory: peak of Python/numpy allocations (tracemalloc) during the ingest")
    tracemalloc.start()
    _ingest_in_process(subset[:3], store, fmt)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  {peak / MB:,.0f} MB traced at peak over 3 checkpoints (largest tensor {size:.1f} MB;"
          " memory-mapped file pages and C-level codec buffers are not traced)")
    shutil.rmtree(store, ignore_errors=True)


@contextlib.contextmanager
def _patched_hash() -> Iterator[None]:
    """Content hashes replaced by a counter (distinct, so no duplicate-content warnings)."""
    import itertools

    from dynlab.store import _run

    saved, counter = _run.tensor_hash, itertools.count(1)
    _run.tensor_hash = lambda array: next(counter)
    try:
        yield
    finally:
        _run.tensor_hash = saved


@contextlib.contextmanager
def _no_param_writes() -> Iterator[None]:
    """Rows of params/ are not written (hashes, metrics and the commit still are): the ingest's
    cost without zarr encoding and writing the tensors."""
    from dynlab.store import _layout
    from dynlab.store._run import Run

    saved = Run._write_row

    def write_row(self, key, *args, **kwargs):
        if not key.startswith(f"{_layout.PARAMS}/"):
            saved(self, key, *args, **kwargs)

    Run._write_row = write_row
    try:
        yield
    finally:
        Run._write_row = saved


def _numcodecs_blosc(codecs):
    """The numcodecs Blosc equivalent of the store's Blosc codec, if that is what it uses."""
    import numcodecs

    for codec in codecs:
        if type(codec).__name__ == "BloscCodec":
            shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[str(codec.shuffle.value)]
            return numcodecs.Blosc(cname=str(codec.cname.value), clevel=codec.clevel,
                                   shuffle=shuffle, typesize=4)
    return None


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _stream(path: Path, fmt: str) -> None:
    from dynlab.ingestion import open_checkpoint

    ckpt = open_checkpoint(path, fmt)
    try:
        for _, array, *_ in ckpt.tensors():
            np.asarray(array).sum()  # touch every page
    finally:
        ckpt.close()


# ------------------------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="checkpoints (default 50)")
    parser.add_argument("--params", type=float, default=25e6,
                        help="parameters per checkpoint (default 25e6)")
    parser.add_argument("--format", choices=sorted(SUFFIX), default="torch")
    parser.add_argument("--out", type=Path, default=REPO / "bench-output",
                        help="working directory (default bench-output/ in the repo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated checkpoints and the store")
    parser.add_argument("--profile", type=int, nargs="?", const=10, default=0, metavar="K",
                        help="also profile an in-process ingest of K checkpoints (default 10)")
    args = parser.parse_args(argv)

    shapes = model_shapes(args.params)
    n_params = sum(math.prod(s) for s in shapes.values())
    largest = max(math.prod(s) for s in shapes.values()) * 4
    print(f"dynlab ingest benchmark: {args.n} × {n_params / 1e6:.1f}M-parameter float32 "
          f"checkpoints ({args.format}), largest tensor {largest / MB:.1f} MB")
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}")

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=args.out))
    try:
        source, files = inputs(args.out, args.n, args.params, args.format, args.seed)
        total = sum(p.stat().st_size for p in files)
        cold_s = raw_read(files)[1] if evict(files) else float("nan")  # disk, for reference
        raw_read(files)  # untimed: warm the page cache
        read_bytes, read_s = raw_read(files)
        assert read_bytes == total
        copy_s = raw_copy(files, work / "copy")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        store = args.out / "store.zarr"
        result = run_ingest(source, store, args.format)
        baseline = import_baseline(args.format)
        verify(store, files, args.format)
        store_bytes = _dir_bytes(store)

        read_rate = total / MB / read_s
        ingest_rate = total / MB / result["seconds"]
        ratio = ingest_rate / read_rate
        rss_limit = 3 * largest + 200 * MB
        rows = [
            ("input", f"{args.n} files, {total / MB:,.0f} MB"),
            ("raw read (16 MiB blocks, warm cache)", f"{read_rate:,.0f} MB/s  ({read_s:.2f} s)"),
            ("  for reference: cold cache (disk)", f"{total / MB / cold_s:,.0f} MB/s  "
                                                   f"({cold_s:.2f} s)"),
            ("  for reference: raw copy (read + write)", f"{total / MB / copy_s:,.0f} MB/s  "
                                                         f"({copy_s:.2f} s)"),
            ("dynlab ingest (CLI, wall clock)",
             f"{ingest_rate:,.0f} MB/s  ({result['seconds']:.2f} s)"),
            ("ingest / raw read", f"{ratio:.2f}  (target ≥ 0.50)"),
            ("  ingest / cold-cache read", f"{ingest_rate / (total / MB / cold_s):.2f}"),
            ("  ingest / raw copy", f"{ingest_rate / (total / MB / copy_s):.2f}"),
            ("store size", f"{store_bytes / MB:,.0f} MB  ({store_bytes / total:.2f} × input)"),
            ("largest tensor", f"{largest / MB:.1f} MB"),
            ("peak RSS of the ingest (20 ms polls)", f"{result['peak_rss'] / MB:,.0f} MB"),
            ("  of which anonymous (RSS - shared)", f"{result['peak_anon'] / MB:,.0f} MB"),
            ("  interpreter + imports alone (VmHWM)", f"{baseline / MB:,.0f} MB"),
            ("  peak above that baseline", f"{(result['peak_rss'] - baseline) / MB:,.0f} MB  "
                                           f"(3 × largest tensor = {3 * largest / MB:,.0f} MB)"),
            ("RSS limit (3 × largest + 200 MB)", f"{rss_limit / MB:,.0f} MB"),
        ]
        width = max(len(k) for k, _ in rows)
        print()
        for key, value in rows:
            print(f"  {key:<{width}}  {value}")
        print(f"\n  CLI said: {result['stdout'].splitlines()[0] if result['stdout'] else '-'}")
        print(f"  load average (1 min) before the ingest: {load:.2f} on {os.cpu_count()} CPUs"
              + ("  — busy machine: rates are pessimistic" if load > 0.5 * (os.cpu_count() or 1)
                 else ""))
        # ru_maxrss is not used: Linux carries the parent's pages at fork into a child's maxrss
        peak = result["peak_rss"]
        ok_rate, ok_rss = ratio >= 0.5, peak <= rss_limit
        print(f"\nthroughput: {'PASS' if ok_rate else 'MISS'} — ingest {ingest_rate:,.0f} MB/s "
              f"is {ratio:.2f} × raw read {read_rate:,.0f} MB/s (target ≥ 0.50)")
        print(f"memory:     {'PASS' if ok_rss else 'MISS'} — peak RSS {peak / MB:,.0f} MB vs "
              f"limit {rss_limit / MB:,.0f} MB (3 × {largest / MB:.1f} MB + 200 MB)")
        if args.profile:
            profile(files, args.format, work, min(args.profile, len(files)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(args.out / "ckpts", ignore_errors=True)
            shutil.rmtree(args.out / "store.zarr", ignore_errors=True)
            with contextlib.suppress(OSError):
                args.out.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
