"""``info-transfer``: prequential code length and information transfer L_IT of a run's data blocks.

METHODS.md §7; Zhang et al., arXiv 2009.07624 (L_IT), prequential coding after Blier & Ollivier,
arXiv 1802.07044. The numbers come from :func:`dynlab.transfer.prequential`:

    L_preq = t_1·log₂C + Σ_{s≥2} b_s,   L(D|θ₀) = t_S·log₂C,   L_IT = L(D|θ₀) − L_preq

with b_s the summed −log₂ p(y|x) of block s under the model trained on blocks 1…s−1, recorded by
``Recorder.log_block`` as the metrics ``preq_block_size`` and ``preq_block_bits`` (rows where both
are NaN are steps without a block). L_IT = L(D|θ₀) − L_preq is the best current reading of the
paper, not confirmed against its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dynlab.analyzers._contract import Analyzer, AnalyzerInputError, Output
from dynlab.analyzers._params import Interval, param

if TYPE_CHECKING:
    import xarray as xr

SIZE_METRIC, BITS_METRIC = "preq_block_size", "preq_block_bits"


@dataclass(frozen=True)
class InfoTransfer(Analyzer):
    """Prequential code length L_preq and information transfer L_IT over the recorded blocks."""

    name: ClassVar[str] = "info-transfer"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ("prequential code length of the recorded data blocks and the "
                                  "information transfer L_IT = t_S·log2 C − L_preq (bits)")
    scope: ClassVar[str] = "run"
    inputs: ClassVar[tuple[str, ...]] = ("metrics", "attrs")
    backends: ClassVar[tuple[str, ...]] = ("numpy",)
    min_steps: ClassVar[int] = 1
    outputs: ClassVar[dict[str, Output]] = {
        "block_size": Output(("step",), "samples", "|B_s|, the samples of the block recorded at this step"),
        "block_bits": Output(("step",), "bit", "b_s as recorded: Σ −log₂ p(y|x) of the block before "
                                               "training on it (the first block's is not used)"),
        "code_bits": Output(("step",), "bit", "what the prequential code spends on the block "
                                              "(t_1·log₂C for the first, then b_s)"),
        "bits_per_sample": Output(("step",), "bit/sample", "code_bits / |B_s|"),
        "samples": Output(("step",), "samples", "t_s, the samples sent up to and including this block"),
        "l_preq": Output(("step",), "bit", "cumulative prequential code length up to this block"),
        "l_uniform": Output(("step",), "bit", "cumulative uniform code length t_s·log₂C, L(D_≤s|θ₀)"),
        "l_it": Output(("step",), "bit", "cumulative information transfer l_uniform − l_preq"),
    }

    n_classes: int = param(0, Interval(int, 0, None),
                           "number of classes C (0 = the run attr n_classes)")

    def compute(self, view: Any, *, backend: str = "numpy") -> xr.Dataset:
        import xarray as xr

        from dynlab.transfer import TransferInputError, prequential

        steps, sizes, bits = self._blocks(view)
        n_classes = self._classes(view)
        try:
            p = prequential(sizes, bits, n_classes)
        except TransferInputError as exc:
            raise AnalyzerInputError(f"run '{view.name}': {exc}") from None
        per = p.per_sample()
        return xr.Dataset(
            {
                "block_size": (("step",), p.block_sizes),
                "block_bits": (("step",), p.block_bits),
                "code_bits": (("step",), p.code_bits),
                "bits_per_sample": (("step",), p.bits_per_sample),
                "samples": (("step",), p.samples),
                "l_preq": (("step",), p.l_preq),
                "l_uniform": (("step",), p.l_uniform),
                "l_it": (("step",), p.l_it),
            },
            coords={"step": steps},
            attrs={
                "n_classes": p.n_classes, "n_blocks": len(steps), "n_samples": p.n_samples,
                "L_preq": p.total_preq, "L_uniform": p.total_uniform, "L_IT": p.total_it,
                "L_IT_max": p.max_it,
                "L_preq_per_sample": per["l_preq"], "L_IT_per_sample": per["l_it"],
                "block_schedule": [[int(s), int(n)] for s, n in zip(steps, p.block_sizes, strict=True)],
                "first_block": "uniform code, t_1·log₂C (METHODS.md §7)",
                "definition": "L_IT = t_S·log2 C − L_preq; best reading of arXiv 2009.07624, "
                              "not confirmed against its text",
            },
        )

    def _blocks(self, view: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        metrics = view.metrics
        missing = [m for m in (SIZE_METRIC, BITS_METRIC) if m not in metrics]
        if missing:
            raise AnalyzerInputError(
                f"run '{view.name}' has no metric {missing[0]} (record data blocks with "
                f"Recorder.log_block; metrics: {', '.join(metrics) or 'none'})")
        size = np.asarray(metrics[SIZE_METRIC], dtype=np.float64)
        bits = np.asarray(metrics[BITS_METRIC], dtype=np.float64)
        has_size, has_bits = ~np.isnan(size), ~np.isnan(bits)
        steps = np.asarray(view.steps, dtype=np.int64)
        odd = np.flatnonzero(has_size != has_bits)
        if len(odd):
            have, lack = (SIZE_METRIC, BITS_METRIC) if has_size[odd[0]] else (BITS_METRIC, SIZE_METRIC)
            raise AnalyzerInputError(f"run '{view.name}' step {int(steps[odd[0]])} has {have} but "
                                     f"no {lack}")
        rows = np.flatnonzero(has_size)
        if not len(rows):
            raise AnalyzerInputError(f"run '{view.name}': no step has a data block "
                                     f"({SIZE_METRIC} is NaN everywhere)")
        return steps[rows], size[rows], bits[rows]

    def _classes(self, view: Any) -> int:
        if self.n_classes:
            value = self.n_classes
        else:
            value = view.attrs.get("n_classes")
            if value is None:
                raise AnalyzerInputError(f"run '{view.name}': the number of classes is unknown; "
                                         "set the run attr n_classes or -p info-transfer.n_classes=C")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not float(value).is_integer() or value < 2:
            src = "n_classes" if self.n_classes else "the run attr n_classes"
            raise AnalyzerInputError(f"run '{view.name}': {src} must be an integer ≥ 2, got {value!r}")
        return int(value)
