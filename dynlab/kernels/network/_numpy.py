"""Node strengths of the weighted, directed graph of a network's neurons (the reference).

Sources: La Malfa et al., "Characterizing Learning Dynamics of Deep Neural Networks via Complex
Networks" (ICTAI 2021, arXiv 2110.02628); METHODS.md §5. Neurons are nodes, each weight is a link
from an input unit to an output unit, a bias sits on its receiving node. For one connection block:

    dense W (out, in):      in-strength of output unit o  = Σ_i W[o, i] + b[o]
                            out-strength of input unit i  = Σ_o W[o, i]
    conv K (O, I/g, *k):  nodes are channel × position; the link set is every (input pixel,
                          output pixel) pair one kernel placement joins (padding is no node):
        in-strength of output pixel (o, y) = Σ_{c, κ: y·s − p + κ·d inside} K[o, c, κ] + b[o]
        out-strength of input pixel (c, x) = Σ_{o, y, κ: y·s − p + κ·d = x} K[o, c, κ]

The second is the transposed convolution of an all-ones output map, the first the convolution of
an all-ones input map. Both are separable over the spatial dims: with the 0/1 placement matrices
``V_d[y, κ] = [0 ≤ y·s − p + κ·d < n_d]`` and ``M_d[κ, x] = Σ_y [y·s − p + κ·d = x]`` they are
two einsums of the kernel summed over one channel axis, so nothing loops over pixels and the cost
is that of summing the kernel once plus O(channels · k · size) — a few ms for a large layer.

Every function accepts leading batch dims (e.g. checkpoints) before the tensor's own dims.
Pure numpy: the work is one pass of sums over each weight, which numpy does at memory speed; a
numba or torch version would not be faster on CPU (docs/network.md).
"""

from __future__ import annotations

import string

import numpy as np

__all__ = ["conv_in_strength", "conv_out_size", "conv_out_strength", "dense_in_strength",
           "dense_out_strength", "placements"]


def dense_in_strength(w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """In-strength of each output unit of a dense block: ``w`` (..., out, in) → (..., out)."""
    s = w.sum(axis=-1, dtype=np.float64)
    return s if b is None else s + b


def dense_out_strength(w: np.ndarray) -> np.ndarray:
    """Out-strength of each input unit of a dense block: ``w`` (..., out, in) → (..., in)."""
    return w.sum(axis=-2, dtype=np.float64)


def conv_out_size(n: int, k: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one dim (torch's formula)."""
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def placements(n: int, k: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """0/1 matrix (out, k, n): entry [y, κ, x] = 1 when output position y with kernel offset κ
    reads input position x (``x = y·s − p + κ·d``, inside ``[0, n)``)."""
    m = conv_out_size(n, k, stride, padding, dilation)
    x = np.arange(m)[:, None] * stride - padding + np.arange(k)[None, :] * dilation  # (m, k)
    return (x[:, :, None] == np.arange(n)[None, None, :]).astype(np.float64)


def _spatial(kernel: np.ndarray, size: tuple[int, ...], channel_axis_sum: np.ndarray,
             stride, padding, dilation, transpose: bool) -> np.ndarray:
    """Contract ``channel_axis_sum`` (..., C, *k) with each dim's placement matrix."""
    d = len(size)
    letters = iter(string.ascii_letters)
    ks = [next(letters) for _ in range(d)]
    ys = [next(letters) for _ in range(d)]
    operands = [channel_axis_sum]
    terms = ["..." + next(letters) + "".join(ks)]
    c = terms[0][3]
    for i in range(d):
        p = placements(size[i], kernel.shape[-d + i], stride[i], padding[i], dilation[i])
        # transposed: Σ_y P[y, κ, x] = M[κ, x]; forward: Σ_x P[y, κ, x] = V[y, κ]
        operands.append(p.sum(axis=0) if transpose else p.sum(axis=2))
        terms.append(ks[i] + ys[i] if transpose else ys[i] + ks[i])
    expr = ",".join(terms) + "->..." + c + "".join(ys)
    return np.einsum(expr, *operands, optimize=True)


def conv_in_strength(kernel: np.ndarray, bias: np.ndarray | None, size: tuple[int, ...],
                     stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...]
                     ) -> np.ndarray:
    """In-strength of each output pixel: ``kernel`` (..., O, I/g, *k), ``bias`` (..., O) or None,
    input spatial ``size`` → (..., O, *out_size). Groups do not matter: every output channel
    reads its own I/g input channels."""
    d = len(size)
    summed = kernel.sum(axis=-d - 1, dtype=np.float64)  # (..., O, *k)
    s = _spatial(kernel, size, summed, stride, padding, dilation, transpose=False)
    if bias is not None:
        s = s + np.asarray(bias, dtype=np.float64)[(..., *([None] * d))]
    return s


def conv_out_strength(kernel: np.ndarray, size: tuple[int, ...], stride: tuple[int, ...],
                      padding: tuple[int, ...], dilation: tuple[int, ...], groups: int = 1
                      ) -> np.ndarray:
    """Out-strength of each input pixel: ``kernel`` (..., O, I/g, *k) → (..., I, *size), I = g·I/g;
    input channel g·(I/g) + j is read by the output channels of group g (torch's layout)."""
    d = len(size)
    out_ch, in_per = kernel.shape[-d - 2], kernel.shape[-d - 1]
    lead = kernel.shape[:-d - 2]
    k = kernel.shape[-d:]
    grouped = kernel.reshape(*lead, groups, out_ch // groups, in_per, *k)
    summed = grouped.sum(axis=-d - 2, dtype=np.float64).reshape(*lead, groups * in_per, *k)
    return _spatial(kernel, size, summed, stride, padding, dilation, transpose=True)
