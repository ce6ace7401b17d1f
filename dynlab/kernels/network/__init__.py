"""Node strengths of a network's neuron graph (METHODS.md §5): dense and convolutional blocks.

One backend, numpy (``_numpy``, the reference and the only implementation): a strength is a sum
over one axis of a weight tensor (dense) or an einsum of the channel-summed kernel with small 0/1
placement matrices (conv), both memory-bound and already at numpy/BLAS speed, so a numba or torch
version would add code without speed on CPU (docs/network.md gives the measurements). Nothing of
dynlab is imported.
"""

from dynlab.kernels.network._numpy import (
    conv_in_strength,
    conv_out_size,
    conv_out_strength,
    dense_in_strength,
    dense_out_strength,
    placements,
)

__all__ = ["conv_in_strength", "conv_out_size", "conv_out_strength", "dense_in_strength",
           "dense_out_strength", "placements"]
