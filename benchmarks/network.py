"""Node-strength benchmark (issue 6: dynlab ≥ 50 × networkx on ≥ 100 checkpoints of a ≥ 5M CNN).

    .venv/bin/python benchmarks/network.py [--steps 100] [--nx-edges 300000]

The CNN (random float32 weights in memory, a different draw per checkpoint):
conv 3→128 (16×16, pad 1) → conv 128→256 (stride 2) → conv 256→512 → conv 512→512 (stride 2)
→ flatten 512·4·4 → linear 256 → linear 10: 5.9M parameters, ~115M links per checkpoint.

Times, in one run:
- dynlab ``structure_strengths`` over all checkpoints (the analyzer's path: batched over chunks of
  checkpoints), and ``node_strength`` called once per checkpoint (the public API);
- the ``network`` analyzer end to end on an in-memory run (strengths + statistics + divergence);
- networkx: ``to_networkx`` (our vectorised edge list → ``DiGraph.add_weighted_edges_from``) plus
  ``in_degree``/``out_degree(weight=…)``. A whole checkpoint would take minutes and tens of GB, so
  networkx is timed on the first output channels of every block (≈ ``--nx-edges`` links each, the
  whole block when smaller), its time per link measured per block and extrapolated linearly in
  links to one full checkpoint — and the strengths it gives are checked against dynlab's.
Prints the per-checkpoint ratio and peak memory (tracemalloc, numpy's allocations) of each part.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np

from dynlab.network import _edge_count, infer_layers, node_strength, structure_strengths, to_networkx

SHAPES = {"conv1.weight": (128, 3, 3, 3), "conv1.bias": (128,),
          "conv2.weight": (256, 128, 3, 3), "conv2.bias": (256,),
          "conv3.weight": (512, 256, 3, 3), "conv3.bias": (512,),
          "conv4.weight": (512, 512, 3, 3), "conv4.bias": (512,),
          "fc1.weight": (256, 512 * 4 * 4), "fc1.bias": (256,),
          "fc2.weight": (10, 256), "fc2.bias": (10,)}
LAYERS = ("conv1.weight:padding=1,conv2.weight:stride=2:padding=1,conv3.weight:padding=1,"
          "conv4.weight:stride=2:padding=1,fc1.weight,fc2.weight")


def timed(fn):
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, out


def networkx_per_checkpoint(structure, tensors: dict[str, np.ndarray], budget: int):
    """Extrapolated networkx seconds for one checkpoint, the links actually built, and the largest
    strength difference to dynlab on those sub-blocks."""
    import networkx as nx  # noqa: F401  (imported before the timing)

    total, built, worst = 0.0, 0, 0.0
    for block in structure.blocks:
        w, b = tensors[block.weight][0].astype(np.float64), tensors[block.bias][0].astype(np.float64)
        full = _edge_count(block)
        out_ch = max(1, min(w.shape[0], int(w.shape[0] * budget / full)))
        sub_w, sub_b = w[:out_ch], b[:out_ch]
        if block.kind == "conv":
            kw = dict(input_size=block.in_shape[1:], stride=[block.stride], padding=[block.padding])
            in_shape = block.in_shape
        else:
            kw, in_shape = {}, (w.shape[1],)
        started = time.perf_counter()
        graph = to_networkx([sub_w], [sub_b], max_edges=10**8, **kw)
        s_in = dict(graph.in_degree(weight="weight"))
        s_out = dict(graph.out_degree(weight="weight"))
        seconds = time.perf_counter() - started
        n_edges = graph.number_of_edges()
        ref = node_strength([sub_w], [sub_b], **kw)
        got_out = np.array([s_out[("input", u)] for u in range(int(np.prod(in_shape)))])
        got_in = np.array([s_in[("0", u)] + graph.nodes[("0", u)]["bias"]
                           for u in range(ref[1].strength.size)])
        worst = max(worst, np.abs(got_out - ref[0].out_strength.ravel()).max(),
                    np.abs(got_in - ref[1].in_strength.ravel()).max())
        total += seconds * full / n_edges
        built += n_edges
        print(f"    {block.weight:<14} {n_edges:>10,} of {full:>11,} links  {seconds:7.2f} s  "
              f"{1e6 * seconds / n_edges:5.2f} µs/link")
        del graph, s_in, s_out
    return total, built, worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--nx-edges", type=float, default=3e5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    tensors = {n: rng.standard_normal((args.steps, *s), dtype=np.float32) for n, s in SHAPES.items()}
    structure = infer_layers([(n, s) for n, s in SHAPES.items()], input_size=(16, 16), layers=LAYERS)
    n_params = sum(int(np.prod(s)) for s in SHAPES.values())
    links = sum(_edge_count(b) for b in structure.blocks)
    print(f"CNN: {n_params:,} parameters, {links:,} links, {sum(n.size for n in structure.layers):,} "
          f"neurons; {args.steps} checkpoints ({args.steps * n_params * 4 / 1e9:.2f} GB float32)")

    chunk = 8  # the analyzer reads ≤ 64 MB of a tensor at once: 8 checkpoints of conv4 (38 MB)

    def batched():
        out = []
        for start in range(0, args.steps, chunk):
            part = {n: v[start:start + chunk] for n, v in tensors.items()}
            out.append([s.strength for s in structure_strengths(structure, part)])
        return out

    def per_checkpoint():
        weights = [n for n in SHAPES if n.endswith("weight")]
        return [node_strength([tensors[n][t] for n in weights],
                              [tensors[n.replace("weight", "bias")][t] for n in weights],
                              input_size=(16, 16), stride=[1, 2, 1, 2], padding=1)
                for t in range(args.steps)]

    t_batch, m_batch, out_b = timed(batched)
    t_single, m_single, out_s = timed(per_checkpoint)
    assert all(np.allclose(out_b[-1][j][-1], out_s[-1][j].strength) for j in range(len(structure.layers)))
    del out_b, out_s

    from dynlab.analyzers.network import Network
    from dynlab.testing import MemoryRun, synthetic_run

    Network().compute(synthetic_run())  # xarray's one-off lazy imports (~2 s) outside the timing

    def analyzer():
        run = MemoryRun("bench", np.arange(args.steps), tensors)  # copies the tensors once
        return Network(layers=LAYERS, input_size="16x16").compute(run)

    t_an, m_an, _ = timed(analyzer)

    print(f"  dynlab structure_strengths (chunks of {chunk}) {t_batch:7.2f} s  "
          f"{1e3 * t_batch / args.steps:7.1f} ms/checkpoint  peak {m_batch / 2**20:7.0f} MiB")
    print(f"  dynlab node_strength per checkpoint     {t_single:7.2f} s  "
          f"{1e3 * t_single / args.steps:7.1f} ms/checkpoint  peak {m_single / 2**20:7.0f} MiB")
    print(f"  network analyzer (+ MemoryRun copy, stats) {t_an:7.2f} s  "
          f"{1e3 * t_an / args.steps:7.1f} ms/checkpoint  peak {m_an / 2**20:7.0f} MiB")
    print("  networkx (to_networkx + weighted in/out degree), sub-blocks of checkpoint 0:")
    t_nx, built, worst = networkx_per_checkpoint(structure, tensors, int(args.nx_edges))
    print(f"  networkx, extrapolated to one checkpoint ({built:,} of {links:,} links built): "
          f"{t_nx:7.1f} s/checkpoint; max |Δ strength| vs dynlab {worst:.1e}")
    per = t_batch / args.steps
    ratio = t_nx / per
    print(f"\ndynlab vs networkx per checkpoint: {ratio:,.0f}×  (target ≥ 50×): "
          f"{'PASS' if ratio >= 50 else 'MISS'}")
    print(f"networkx for all {args.steps} checkpoints would take ≈ {t_nx * args.steps / 3600:.1f} h")


if __name__ == "__main__":
    main()
