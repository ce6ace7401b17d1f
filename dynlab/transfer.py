"""Information transfer by prequential (online) coding (METHODS.md §7).

The data D are sent in S ordered blocks B_1, …, B_S with boundaries 0 = t_0 < t_1 < … < t_S
(|B_s| = t_s − t_{s−1}) over C classes. The first block is sent with the uniform code (there is no
model yet); every later block is sent with the model θ_{s−1} trained on all blocks before it, and
costs its summed log-loss evaluated *before* training on it:

    b_s      = Σ_{(x,y)∈B_s} −log₂ p_{θ_{s−1}}(y|x)                  (recorded per block)
    L_preq   = t_1·log₂C + Σ_{s=2}^{S} b_s                           (prequential code length)
    L(D|θ₀)  = Σ_s |B_s|·log₂C = t_S·log₂C                           (uninformed model θ₀)
    L_IT     = L(D|θ₀) − L_preq = Σ_{s=2}^{S} (|B_s|·log₂C − b_s)      (information transfer)

L_IT is the code length saved on *future* data thanks to what was learned from the past. Its
largest value, reached by a model that predicts every later block perfectly (b_s = 0 for s ≥ 2),
is (t_S − t_1)·log₂C; a model that learns nothing (b_s = |B_s|·log₂C) gives 0; a model worse than
uniform on unseen data (an overconfident memoriser) gives L_IT < 0. Per-sample values divide by
t_S, the size of D.

Sources: prequential coding — Dawid (1984); Blier & Ollivier, "The Description Length of Deep
Learning Models" (NeurIPS 2018, arXiv 1802.07044), whose uniform code for the first block this
follows. L_IT — Zhang, Li, Dou, Wu, "Measuring Information Transfer in Neural Networks" (arXiv
2009.07624). The formula L_IT = L(D|θ₀) − L_preq is METHODS.md §7's best current reading of that
paper; it is **not confirmed against the paper's text**.

Pure functions on numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dynlab.errors import DynlabError

__all__ = ["Prequential", "TransferInputError", "prequential"]


class TransferInputError(DynlabError, ValueError):
    """Block sizes, code lengths or a class count that prequential coding cannot use."""


@dataclass(frozen=True, eq=False)
class Prequential:
    """The result of :func:`prequential` (arrays are read-only, one entry per block, in order).

    block_sizes |B_s|; block_bits b_s as given (the first block's value is not used by the code);
    code_bits: what the prequential code spends on each block (t_1·log₂C, then b_s); samples t_s;
    l_preq, l_uniform, l_it: the cumulative L_preq, L(D|θ₀) and L_IT up to and including block s;
    bits_per_sample: code_bits / |B_s|, the per-block code rate (log₂C for the first block).
    """

    n_classes: int
    block_sizes: np.ndarray
    block_bits: np.ndarray
    code_bits: np.ndarray
    samples: np.ndarray
    l_preq: np.ndarray
    l_uniform: np.ndarray
    l_it: np.ndarray
    bits_per_sample: np.ndarray

    @property
    def n_samples(self) -> int:
        """t_S, the number of samples in D."""
        return int(self.samples[-1])

    @property
    def total_preq(self) -> float:
        """L_preq(D) in bits."""
        return float(self.l_preq[-1])

    @property
    def total_uniform(self) -> float:
        """L(D|θ₀) = t_S·log₂C in bits."""
        return float(self.l_uniform[-1])

    @property
    def total_it(self) -> float:
        """L_IT = L(D|θ₀) − L_preq(D) in bits."""
        return float(self.l_it[-1])

    @property
    def max_it(self) -> float:
        """The largest possible L_IT with this schedule, (t_S − t_1)·log₂C (perfect prediction)."""
        return float((self.samples[-1] - self.samples[0]) * math.log2(self.n_classes))

    def per_sample(self) -> dict[str, float]:
        """L_preq, L(D|θ₀) and L_IT divided by t_S (bits per sample)."""
        n = self.n_samples
        return {"l_preq": self.total_preq / n, "l_uniform": self.total_uniform / n,
                "l_it": self.total_it / n}


def prequential(block_sizes: Any, block_bits: Any, n_classes: int) -> Prequential:
    """Prequential code length and information transfer of an ordered block schedule.

    ``block_sizes`` (S,): positive integers |B_s|; ``block_bits`` (S,): b_s, the summed −log₂ p(y|x)
    of block s under the model trained on blocks 1…s−1, evaluated before training on block s
    (finite and ≥ 0 from the second block on; the first entry is not used and may be NaN);
    ``n_classes``: C ≥ 2. Formulas in the module docstring.
    """
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 2:
        raise TransferInputError(f"n_classes must be an integer ≥ 2, got {n_classes!r}")
    sizes = _block_sizes(block_sizes)
    bits = np.asarray(block_bits, dtype=np.float64)
    if bits.shape != sizes.shape:
        raise TransferInputError(f"block_bits must be 1-D with one value per block "
                                 f"({len(sizes)}), got shape {bits.shape}")
    later = bits[1:]
    bad = np.flatnonzero(~np.isfinite(later) | (later < 0))
    if len(bad):
        s = int(bad[0]) + 1
        raise TransferInputError(f"block {s} (0-based) has code length {later[bad[0]]!r} bits; "
                                 "a code length must be finite and ≥ 0")
    log2c = math.log2(int(n_classes))
    code = bits.copy()
    code[0] = sizes[0] * log2c
    samples = np.cumsum(sizes)
    l_preq = np.cumsum(code)
    l_uniform = samples * log2c
    return Prequential(
        n_classes=int(n_classes), block_sizes=_ro(sizes), block_bits=_ro(bits), code_bits=_ro(code),
        samples=_ro(samples), l_preq=_ro(l_preq), l_uniform=_ro(l_uniform),
        l_it=_ro(l_uniform - l_preq), bits_per_sample=_ro(code / sizes))


def _block_sizes(block_sizes: Any) -> np.ndarray:
    raw = np.asarray(block_sizes)
    if raw.ndim != 1 or raw.size == 0:
        raise TransferInputError(f"block_sizes must be 1-D with at least one block, got shape "
                                 f"{raw.shape}")
    if raw.dtype.kind not in "iuf":
        raise TransferInputError(f"block_sizes must be numbers, got dtype {raw.dtype}")
    as_float = raw.astype(np.float64)
    if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)) \
            or np.any(as_float < 1):
        bad = as_float[~(np.isfinite(as_float) & (as_float == np.round(as_float)) & (as_float >= 1))]
        raise TransferInputError(f"block sizes must be positive integers, got {bad[0]!r}")
    return as_float.astype(np.int64)


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a
