"""dynlab.network: node strengths and layer fluctuation against a hand-computed net, networkx,
a slow explicit convolution loop and torch's (transposed) convolutions."""

from __future__ import annotations

import itertools
import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynlab.errors import DynlabError
from dynlab.kernels import network as k
from dynlab.network import (
    NetworkStructureError,
    block_strengths,
    infer_layers,
    is_norm_layer,
    layer_fluctuation,
    node_strength,
    parse_layers,
    structure_strengths,
    to_networkx,
)

# ---------------------------------------------------------------------------- references


def slow_conv_strengths(kernel, bias, size, stride, padding, dilation, groups):
    """Explicit loops over every output pixel, kernel offset and channel pair: the definition."""
    out_ch, in_per, *ks = kernel.shape
    d = len(size)
    out_size = [(n + 2 * p - q * (kk - 1) - 1) // s + 1
                for n, kk, s, p, q in zip(size, ks, stride, padding, dilation, strict=True)]
    s_in = np.zeros((out_ch, *out_size))
    s_out = np.zeros((in_per * groups, *size))
    per_group = out_ch // groups
    for o in range(out_ch):
        for y in itertools.product(*map(range, out_size)):
            s_in[(o, *y)] += 0.0 if bias is None else bias[o]
            for kappa in itertools.product(*map(range, ks)):
                x = tuple(y[i] * stride[i] - padding[i] + kappa[i] * dilation[i] for i in range(d))
                if not all(0 <= x[i] < size[i] for i in range(d)):
                    continue  # a padding position: no node, no link
                for j in range(in_per):
                    c = (o // per_group) * in_per + j
                    w = kernel[(o, j, *kappa)]
                    s_in[(o, *y)] += w
                    s_out[(c, *x)] += w
    return s_in, s_out


def nx_strengths(graph, layer, n):
    """In-strength (weighted in-degree + bias) and out-strength (weighted out-degree) of a layer."""
    nodes = [(layer, u) for u in range(n)]
    s_in = np.array([graph.in_degree(v, weight="weight") + graph.nodes[v]["bias"] for v in nodes])
    s_out = np.array([graph.out_degree(v, weight="weight") for v in nodes])
    return s_in, s_out


def random_mlp(rng, widths, integer=False):
    draw = (lambda shape: rng.integers(-5, 6, shape).astype(np.float64)) if integer else \
        rng.standard_normal
    ws = [draw((o, i)) for i, o in itertools.pairwise(widths)]
    bs = [draw((o,)) if rng.random() < 0.7 else None for o in widths[1:]]
    return ws, bs


# ---------------------------------------------------------------------------- analytic


def test_hand_computed_2_2_1():
    w0 = np.array([[1.0, 2.0], [3.0, 4.0]])  # (out, in)
    b0 = np.array([0.5, -1.0])
    w1 = np.array([[5.0, -6.0]])
    b1 = np.array([2.0])
    s = node_strength([w0, w1], [b0, b1])
    # input: column sums of w0; hidden: row sums of w0 + b0 (in) and column sums of w1 (out)
    np.testing.assert_array_equal(s[0].strength, [4.0, 6.0])
    np.testing.assert_array_equal(s[1].in_strength, [3.5, 6.0])
    np.testing.assert_array_equal(s[1].out_strength, [5.0, -6.0])
    np.testing.assert_array_equal(s[1].strength, [8.5, 0.0])
    np.testing.assert_array_equal(s[2].strength, [1.0])  # 5 − 6 + 2
    np.testing.assert_array_equal(s[0].in_strength, [0.0, 0.0])
    np.testing.assert_array_equal(s[2].out_strength, [0.0])
    np.testing.assert_allclose(layer_fluctuation(s), [1.0, 4.25, 0.0])
    a = node_strength([w0, w1], [b0, b1], absolute=True)
    assert [x.strength.tolist() for x in a] == [[4.0, 6.0], [8.5, 14.0], [13.0]]
    e = node_strength([w0, w1], [b0, b1], endpoint_offset=True)
    assert [x.strength.tolist() for x in e] == [[5.0, 7.0], [8.5, 0.0], [2.0]]


def test_conv_all_ones_kernel_counts_placements():
    # an all-ones 3×3 kernel, stride 1, padding 1 on 5×5: in-strength = number of real input
    # pixels under the window (4 at corners, 6 on edges, 9 inside); out-strength the same by symmetry
    kernel = np.ones((1, 1, 3, 3))
    s_in, s_out = block_strengths(infer_layers([("c.weight", kernel.shape)], input_size=(5, 5),
                                               padding=1).blocks[0], kernel)
    expected = np.full((5, 5), 9.0)
    expected[[0, -1], :] = 6
    expected[:, [0, -1]] = 6
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = 4
    np.testing.assert_array_equal(s_in[0], expected)
    np.testing.assert_array_equal(s_out[0], expected)


# ---------------------------------------------------------------------------- networkx


@pytest.mark.parametrize("seed", range(4))
def test_mlp_equals_networkx_exactly_on_integer_weights(seed):
    rng = np.random.default_rng(seed)
    widths = rng.integers(1, 7, size=rng.integers(2, 6))
    ws, bs = random_mlp(rng, list(widths), integer=True)
    strengths = node_strength(ws, bs)
    graph = to_networkx(ws, bs)
    names = list(dict.fromkeys(layer for _, layer in graph.nodes(data="layer")))
    assert len(names) == len(strengths) == len(widths)
    for name, s in zip(names, strengths, strict=True):
        s_in, s_out = nx_strengths(graph, name, s.strength.size)
        np.testing.assert_array_equal(s_in, s.in_strength)  # small integers: sums are exact
        np.testing.assert_array_equal(s_out, s.out_strength)


@pytest.mark.parametrize("seed", range(3))
def test_mlp_equals_networkx_on_gaussian_weights(seed):
    rng = np.random.default_rng(10 + seed)
    ws, bs = random_mlp(rng, [7, 9, 5, 3])
    strengths = node_strength(ws, bs, absolute=seed == 1)
    graph = to_networkx(ws, bs, absolute=seed == 1)
    for name, s in zip(["input", "0", "1", "2"], strengths, strict=True):
        s_in, s_out = nx_strengths(graph, name, s.strength.size)
        # networkx adds in insertion order, numpy pairwise: ≤ a few ulp of the sum's terms
        np.testing.assert_allclose(s_in, s.in_strength, rtol=0, atol=1e-12)
        np.testing.assert_allclose(s_out, s.out_strength, rtol=0, atol=1e-12)


def test_cnn_with_flatten_equals_networkx():
    rng = np.random.default_rng(3)
    ws = [rng.integers(-3, 4, (4, 2, 3, 3)), rng.integers(-3, 4, (6, 2, 2, 3)),
          rng.integers(-3, 4, (3, 6 * 3 * 2))]
    ws = [w.astype(np.float64) for w in ws]
    bs = [rng.integers(-3, 4, 4).astype(float), None, rng.integers(-3, 4, 3).astype(float)]
    kw = dict(input_size=(7, 6), stride=[1, (2, 1)], padding=[1, 0], dilation=[1, (1, 2)], groups=[1, 2])
    strengths = node_strength(ws, bs, **kw)
    assert [s.strength.shape for s in strengths] == [(2, 7, 6), (4, 7, 6), (6, 3, 2), (3,)]
    graph = to_networkx(ws, bs, **kw)
    for name, s in zip(["input", "0", "1", "2"], strengths, strict=True):
        s_in, s_out = nx_strengths(graph, name, s.strength.size)
        np.testing.assert_array_equal(s_in, s.in_strength.ravel())
        np.testing.assert_array_equal(s_out, s.out_strength.ravel())


def test_to_networkx_from_a_checkpoint_and_refuses_large_graphs():
    rng = np.random.default_rng(0)
    ckpt = {"fc1.weight": rng.standard_normal((5, 4)), "fc1.bias": rng.standard_normal(5),
            "bn.weight": np.ones(5), "fc2.weight": rng.standard_normal((2, 5))}
    graph = to_networkx(ckpt)
    assert graph.number_of_nodes() == 4 + 5 + 2 and graph.number_of_edges() == 20 + 10
    assert {layer for _, layer in graph.nodes(data="layer")} == {"input", "fc1", "fc2"}
    with pytest.raises(NetworkStructureError, match="max_edges"):
        to_networkx(ckpt, max_edges=10)


# ---------------------------------------------------------------------------- convolutions


CONV_CASES = [  # kernel shape (O, I/g, *k), input size, stride, padding, dilation, groups
    ((3, 2, 3, 3), (6, 5), (1, 1), (0, 0), (1, 1), 1),
    ((3, 2, 3, 3), (6, 5), (2, 2), (1, 1), (1, 1), 1),
    ((4, 1, 3, 2), (7, 6), (3, 2), (2, 1), (1, 1), 2),
    ((2, 3, 1, 1), (4, 4), (2, 2), (0, 0), (1, 1), 1),
    ((4, 2, 3, 3), (9, 8), (1, 2), (2, 0), (2, 1), 2),
    ((2, 2, 5, 5), (5, 5), (1, 1), (2, 2), (1, 1), 1),
    ((2, 2, 2, 2), (5, 7), (3, 3), (1, 0), (1, 1), 1),  # trailing pixels never read
    ((3, 2, 4), (9,), (2,), (1,), (2,), 1),  # conv1d
    ((2, 1, 2, 3, 2), (3, 5, 4), (1, 2, 1), (0, 1, 1), (1, 1, 1), 1),  # conv3d
]


@pytest.mark.parametrize(("shape", "size", "stride", "padding", "dilation", "groups"), CONV_CASES)
def test_conv_strengths_equal_explicit_loop(shape, size, stride, padding, dilation, groups):
    rng = np.random.default_rng(sum(shape))
    kernel = rng.standard_normal(shape)
    bias = rng.standard_normal(shape[0])
    ref_in, ref_out = slow_conv_strengths(kernel, bias, size, stride, padding, dilation, groups)
    got_in = k.conv_in_strength(kernel, bias, size, stride, padding, dilation)
    got_out = k.conv_out_strength(kernel, size, stride, padding, dilation, groups)
    np.testing.assert_allclose(got_in, ref_in, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_out, ref_out, rtol=1e-12, atol=1e-12)
    # leading batch dims (checkpoints) give each entry's own strengths
    batch = np.stack([kernel, 2 * kernel])
    np.testing.assert_allclose(k.conv_out_strength(batch, size, stride, padding, dilation, groups)[1],
                               2 * ref_out, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "size", "stride", "padding", "dilation", "groups"),
                         [c for c in CONV_CASES if len(c[1]) == 2])
def test_conv_strengths_equal_torch_convolutions_of_ones(shape, size, stride, padding, dilation, groups):
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal(shape)
    kt = torch.tensor(kernel)
    out_size = [k.conv_out_size(n, kk, s, p, q)
                for n, kk, s, p, q in zip(size, shape[2:], stride, padding, dilation, strict=True)]
    fwd = f.conv2d(torch.ones(1, shape[1] * groups, *size, dtype=torch.float64), kt, stride=stride,
                   padding=padding, dilation=dilation, groups=groups)[0].numpy()
    # transposed convolution of ones over the padded input, then the padding cropped off
    full = f.conv_transpose2d(torch.ones(1, shape[0], *out_size, dtype=torch.float64), kt,
                              stride=stride, dilation=dilation, groups=groups)[0].numpy()
    full = full[:, padding[0]:padding[0] + size[0], padding[1]:padding[1] + size[1]]
    back = np.zeros((shape[1] * groups, *size))
    back[:, :full.shape[1], :full.shape[2]] = full  # pixels past the last placement: 0
    np.testing.assert_allclose(k.conv_in_strength(kernel, None, size, stride, padding, dilation), fwd,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(k.conv_out_strength(kernel, size, stride, padding, dilation, groups), back,
                               rtol=1e-12, atol=1e-12)


def test_conv_then_linear_flatten_and_mismatch():
    rng = np.random.default_rng(2)
    conv, fc = rng.standard_normal((3, 1, 3, 3)), rng.standard_normal((2, 3 * 4 * 4))
    s = node_strength([conv, fc], input_size=(6, 6))
    # the hidden layer's out-strength is fc's column sums, read in C-major (torch.flatten) order
    np.testing.assert_allclose(s[1].out_strength, fc.sum(axis=0).reshape(3, 4, 4))
    with pytest.raises(NetworkStructureError, match="chain breaks"):
        node_strength([conv, rng.standard_normal((2, 3))], input_size=(6, 6))  # global pooling
    with pytest.raises(NetworkStructureError, match="spatial size"):
        node_strength([conv, fc])


# ---------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), widths=st.lists(st.integers(1, 6), min_size=3, max_size=5))
def test_permuting_hidden_neurons_permutes_strengths(seed, widths):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((o, i)) for i, o in itertools.pairwise(widths)]
    bs = [rng.standard_normal(o) for o in widths[1:]]
    perm = rng.permutation(widths[1])
    ws2 = [ws[0][perm], ws[1][:, perm], *ws[2:]]
    bs2 = [bs[0][perm], *bs[1:]]
    a, b = node_strength(ws, bs), node_strength(ws2, bs2)
    np.testing.assert_allclose(b[1].strength, a[1].strength[perm], rtol=1e-12, atol=1e-12)
    for j in (0, *range(2, len(widths))):
        np.testing.assert_allclose(b[j].strength, a[j].strength, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer_fluctuation(b), layer_fluctuation(a), rtol=1e-9, atol=1e-12)


def test_layer_fluctuation_is_population_std_with_batches():
    rng = np.random.default_rng(0)
    layers = [rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 7))]
    got = layer_fluctuation(layers, batch_dims=1)
    assert got.shape == (2, 4)
    np.testing.assert_allclose(got[0], [np.std(x.ravel()) for x in layers[0]])
    np.testing.assert_allclose(got[1], np.sqrt(((layers[1] - layers[1].mean(1, keepdims=True)) ** 2)
                                               .mean(1)))


def test_batched_structure_strengths_equal_per_checkpoint():
    rng = np.random.default_rng(4)
    tensors = {"c.weight": rng.standard_normal((3, 5, 2, 3, 3)), "c.bias": rng.standard_normal((3, 5)),
               "f.weight": rng.standard_normal((3, 4, 5 * 3 * 3))}
    structure = infer_layers([(n, v.shape[1:]) for n, v in tensors.items()], input_size=(5, 5),
                             padding=0)
    batched = structure_strengths(structure, tensors)
    for t in range(3):
        single = node_strength([tensors["c.weight"][t], tensors["f.weight"][t]],
                               [tensors["c.bias"][t], None], input_size=(5, 5))
        for a, b in zip(batched, single, strict=True):
            np.testing.assert_allclose(a.strength[t], b.strength, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- structure


def test_infer_layers_from_names_and_shapes():
    tensors = [("conv1.weight", (8, 3, 3, 3), "float32"), ("conv1.bias", (8,), "float32"),
               ("bn1.weight", (8,), "float32"), ("bn1.running_mean", (8,), "float32"),
               ("bn1.num_batches_tracked", (), "int64"),
               ("dw.weight", (8, 1, 3, 3), "float32"),  # depthwise: groups inferred
               ("conv2.weight", (16, 8, 3, 3), "float32"),
               ("fc.weight", (10, 16), "float32"), ("fc.bias", (10,), "float32"),
               ("scale", (10,), "float32")]
    s = infer_layers(tensors, input_size=(8, 8), padding=1)
    assert [b.weight for b in s.blocks] == ["conv1.weight", "dw.weight", "conv2.weight", "fc.weight"]
    assert [b.bias for b in s.blocks] == ["conv1.bias", None, None, "fc.bias"]
    assert s.blocks[1].groups == 8
    # fc reads 16 features after a 16×8×8 conv: global pooling, the chain breaks there
    assert [n.name for n in s.layers] == ["input", "conv1", "dw", "conv2", "fc.in", "fc"]
    assert not s.chained
    assert set(s.skipped) == {"bn1.weight", "bn1.running_mean", "bn1.num_batches_tracked", "scale"}
    assert any("chain breaks before fc.weight" in n for n in s.notes)
    assert json.loads(json.dumps(s.describe())) == s.describe()
    assert is_norm_layer("layers.0.LayerNorm.weight") and not is_norm_layer("layers.0.weight")


def test_explicit_layers_with_pooling_size():
    tensors = [("a.weight", (4, 1, 3, 3)), ("b.weight", (4, 4, 3, 3)), ("head.weight", (2, 4 * 2 * 2))]
    # a max-pool of 2 between a and b: give b's input size explicitly
    s = infer_layers(tensors, input_size=(8, 8), padding=1,
                     layers="a.weight, b.weight:size=4x4:stride=2:padding=1, head.weight")
    assert s.blocks[1].in_shape == (4, 4, 4) and s.blocks[1].out_shape == (4, 2, 2)
    assert [n.name for n in s.layers] == ["input", "a", "b.in", "b", "head"]
    specs = parse_layers("x.weight:stride=2x1:groups=2:bias=none")
    assert specs[0].stride == (2, 1) and specs[0].groups == 2 and specs[0].bias == "none"


@pytest.mark.parametrize(("call", "match"), [
    (lambda: node_strength([]), "empty"),
    (lambda: node_strength([np.ones((2, 2))], [None, None]), "biases"),
    (lambda: node_strength([np.ones((2, 2)).astype(bool)]), "real numbers"),
    (lambda: node_strength([np.ones((2, 2)), np.ones((3, 3))]), "chain"),
    (lambda: node_strength([np.ones(3)]), "shape"),
    (lambda: node_strength([np.ones((2, 1, 5, 5))], input_size=(3, 3)), "does not fit"),
    (lambda: node_strength([np.ones((3, 1, 3, 3))], input_size=(3, 3), groups=[2]), "groups"),
    (lambda: parse_layers("a:stride=two"), "integers"),
    (lambda: parse_layers("a:colour=red"), "expected"),
    (lambda: parse_layers(" , "), "empty"),
    (lambda: infer_layers([("a.weight", (2, 2))], layers="b.weight"), "no tensor"),
    (lambda: infer_layers([("x", (3,))]), "no weight"),
])
def test_bad_input_is_a_clear_dynlab_error(call, match):
    with pytest.raises(NetworkStructureError, match=match) as info:
        call()
    assert isinstance(info.value, DynlabError) and "\n" not in str(info.value)


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    np.testing.assert_array_equal(node_strength([w])[0].strength, [3.0, 5.0, 7.0])
    assert isinstance(to_networkx([w]), nx.DiGraph)


def test_importing_is_cheap():
    import subprocess
    import sys

    code = ("import sys, json, dynlab.network, dynlab.analyzers.network\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & {"networkx", "scipy", "xarray", "torch", "numba"}
