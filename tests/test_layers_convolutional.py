"""Conv2DTranspose against a scatter-form numpy reference over a grid of strides, paddings,
output paddings, dilations and odd sizes (float64 to 1e-12), finite differences, PyTorch's
ConvTranspose2d when installed, and its argument checks. (Every kernel path: test_layers_reshaping.)"""

import itertools

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L

import reference as ref

GRID = [  # (kernel, strides, padding, output_padding, dilation, input H x W)
    (3, 1, "valid", None, 1, (5, 4)), (3, 2, "valid", None, 1, (5, 4)), (3, 2, "same", None, 1, (5, 4)),
    (2, 2, "same", None, 1, (3, 3)), (4, 3, "valid", None, 1, (2, 5)), (1, 3, "valid", None, 1, (3, 2)),
    (3, 2, "valid", (1, 1), 1, (4, 4)), (3, 2, "same", (1, 0), 1, (4, 3)), (5, 3, "same", (2, 1), 1, (3, 3)),
    (3, 1, "valid", None, 2, (4, 5)), (3, 1, "same", None, 2, (4, 5)), ((2, 3), (1, 2), "same", None, 1, (3, 4)),
    (3, 2, "valid", None, 1, (1, 1)),
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("k,s,pad,op,d,hw", GRID, ids=[str(i) for i in range(len(GRID))])
def test_conv2d_transpose_matches_reference(rng, k, s, pad, op, d, hw):
    cnnbp.set_seed(3)
    x = rng.standard_normal((2,) + hw + (3,))
    layer = L.Conv2DTranspose(4, k, strides=s, padding=pad, output_padding=op, dilation_rate=d)
    i = L.Input(x.shape[1:])
    m = cnnbp.Model(i, layer(i), dtype="float64")
    w, b = layer.get_weights()
    b = rng.standard_normal(4)
    layer.set_weights([w, b])
    assert w.shape == _pair(k) + (4, 3)   # Keras's layout: (kh, kw, filters, in_channels)
    y = m.predict(x, verbose=0)
    kh, kw = _pair(k)
    (sh, sw), (oph, opw) = _pair(s), op or (None, None)
    assert y.shape[1:3] == (ref.deconv_length(hw[0], kh, sh, d, pad, oph), ref.deconv_length(hw[1], kw, sw, d, pad, opw))
    ref.assert_close(y, ref.conv2d_transpose(x, w, b, _pair(s), pad, op, (d, d)), 1e-12)
    res = cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None)
    assert res.ok, res


def test_conv2d_transpose_is_the_adjoint_of_conv2d(rng):
    """<conv(u), v> == <u, conv_transpose(v)> with the same kernel and geometry."""
    x = rng.standard_normal((1, 7, 6, 2))
    w = rng.standard_normal((3, 3, 2, 5))
    y = ref.conv2d(x, w, strides=(2, 2), padding="same")
    v = rng.standard_normal(y.shape)
    layer = L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=(0, 1), use_bias=False)
    i = L.Input(v.shape[1:])
    m = cnnbp.Model(i, layer(i), dtype="float64")
    layer.set_weights([w])
    t = m.predict(v, verbose=0)
    assert t.shape == x.shape
    assert abs(np.sum(y * v) - np.sum(x * t)) < 1e-10 * np.sum(np.abs(y * v))


def test_conv2d_transpose_with_activation_and_in_a_trained_decoder(rng):
    """An autoencoder-sized decoder with relu inside: gradients exact, and it learns to invert
    a fixed downsampling."""
    cnnbp.set_seed(1)
    i = L.Input((8, 8, 1))
    h = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(i)
    o = L.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid")(h)
    m = cnnbp.Model(i, o, dtype="float64")
    x = rng.random((4, 8, 8, 1))
    assert cnnbp.gradcheck(m, x, x, loss="mse", print_fn=None).ok
    m32 = cnnbp.Model.from_config(m.get_config())
    m32.compile(optimizer=cnnbp.optimizers.Adam(0.01), loss="mse")
    xs = (rng.random((64, 8, 8, 1)) > 0.5).astype(np.float32)
    first = m32.evaluate(xs, xs, verbose=0)
    m32.fit(xs, xs, epochs=30, batch_size=16, verbose=0)
    assert m32.evaluate(xs, xs, verbose=0) < 0.8 * first


def test_conv2d_transpose_equals_pytorch(rng):
    torch = pytest.importorskip("torch")
    for s, d in itertools.product((1, 2, 3), (1, 2)):
        if s > 1 and d > 1:
            continue
        x = rng.standard_normal((2, 4, 5, 3))
        layer = L.Conv2DTranspose(6, 3, strides=s, dilation_rate=d)   # valid, k_eff >= s: torch's size
        i = L.Input(x.shape[1:])
        m = cnnbp.Model(i, layer(i), dtype="float64")
        w, b = layer.get_weights()
        t = torch.nn.functional.conv_transpose2d(torch.from_numpy(x.transpose(0, 3, 1, 2)),
                                                 torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))),
                                                 torch.from_numpy(b), stride=s, dilation=d)
        ref.assert_close(m.predict(x, verbose=0), t.numpy().transpose(0, 2, 3, 1), 1e-12)


@pytest.mark.parametrize("kw,match", [
    (dict(padding="causal"), "padding must be 'valid' or 'same'"), (dict(output_padding=2, strides=2), "smaller"),
    (dict(strides=2, dilation_rate=2), "strides > 1 together with dilation"), (dict(filters=0), "filters")])
def test_conv2d_transpose_arguments(kw, match):
    args = dict(dict(filters=2, kernel_size=3), **kw)
    with pytest.raises(ValueError, match=match):
        L.Conv2DTranspose(**args)


GRID_1D = [(3, 1, "valid", 1), (3, 2, "same", 1), (4, 1, "causal", 1), (3, 1, "causal", 2), (2, 3, "valid", 1),
           (5, 1, "same", 2), (1, 1, "valid", 1)]


@pytest.mark.parametrize("k,s,pad,d", GRID_1D)
def test_conv1d_matches_reference(rng, k, s, pad, d):
    x = rng.standard_normal((2, 11, 3))
    layer = L.Conv1D(4, k, strides=s, padding=pad, dilation_rate=d)
    i = L.Input(x.shape[1:])
    m = cnnbp.Model(i, layer(i), dtype="float64")
    w, b = layer.get_weights()
    assert w.shape == (k, 3, 4)   # Keras's layout
    b = rng.standard_normal(4)
    layer.set_weights([w, b])
    y = m.predict(x, verbose=0)
    ref.assert_close(y, ref.conv1d(x, w, b, s, pad, d), 1e-12)
    assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok


def test_causal_conv1d_never_sees_the_future(rng):
    i = L.Input((10, 2))
    m = cnnbp.Model(i, L.Conv1D(3, 4, padding="causal", dilation_rate=2)(i), dtype="float64")
    x = rng.standard_normal((1, 10, 2))
    y = m.predict(x, verbose=0)
    x2 = x.copy()
    x2[:, 6:] = 100.0
    assert np.array_equal(m.predict(x2, verbose=0)[:, :6], y[:, :6])


def test_conv1d_equals_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 13, 3))
    layer = L.Conv1D(5, 4, strides=2, dilation_rate=1)
    i = L.Input(x.shape[1:])
    m = cnnbp.Model(i, layer(i), dtype="float64")
    w, b = layer.get_weights()
    t = torch.nn.functional.conv1d(torch.from_numpy(x.transpose(0, 2, 1)),
                                   torch.from_numpy(np.ascontiguousarray(w.transpose(2, 1, 0))), torch.from_numpy(b),
                                   stride=2)
    ref.assert_close(m.predict(x, verbose=0), t.numpy().transpose(0, 2, 1), 1e-12)


def test_conv1d_arguments_and_input_rank():
    with pytest.raises(ValueError, match="'valid', 'same' or 'causal'"):
        L.Conv1D(2, 3, padding="full")
    i = L.Input((5, 5, 1))
    with pytest.raises(ValueError, match=r"expected an input of shape \(None, steps, channels\)"):
        cnnbp.Model(i, L.Conv1D(2, 3)(i))


GRID_DW = [(3, 1, "valid", 1, 1), (3, 2, "same", 2, 1), (3, 1, "same", 1, 2), ((2, 3), (2, 1), "valid", 3, 1),
           (1, 1, "valid", 1, 1), (5, 3, "same", 1, 1)]


@pytest.mark.parametrize("k,s,pad,m,d", GRID_DW)
def test_depthwise_conv2d(rng, k, s, pad, m, d):
    x = rng.standard_normal((2, 7, 6, 3))
    layer = L.DepthwiseConv2D(k, strides=s, padding=pad, depth_multiplier=m, dilation_rate=d)
    i = L.Input(x.shape[1:])
    model = cnnbp.Model(i, layer(i), dtype="float64")
    w, b = layer.get_weights()
    assert w.shape == _pair(k) + (3, m) and b.shape == (3 * m,)
    b = rng.standard_normal(3 * m)
    layer.set_weights([w, b])
    y = model.predict(x, verbose=0)
    ref.assert_close(y, ref.depthwise_conv2d(x, w, b, _pair(s), pad, (d, d)), 1e-12)
    assert cnnbp.gradcheck(model, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok


@pytest.mark.parametrize("groups,cin,filters", [(2, 4, 6), (3, 6, 3), (4, 4, 8), (2, 8, 6), (3, 12, 9)])
def test_grouped_conv2d(rng, groups, cin, filters):
    x = rng.standard_normal((2, 6, 5, cin))
    layer = L.Conv2D(filters, 3, padding="same", groups=groups, activation="relu")
    i = L.Input(x.shape[1:])
    model = cnnbp.Model(i, layer(i), dtype="float64")
    w, b = layer.get_weights()
    assert w.shape == (3, 3, cin // groups, filters)
    b = rng.standard_normal(filters)
    layer.set_weights([w, b])
    y = model.predict(x, verbose=0)
    ref.assert_close(y, np.maximum(ref.grouped_conv2d(x, w, b, groups, padding="same"), 0), 1e-12)
    assert cnnbp.gradcheck(model, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok


@pytest.mark.parametrize("cin", [4, 8])   # the grouped kernel, and per-group ordinary convolutions
def test_grouped_conv2d_inside_a_graph_accumulates_its_input_gradient(rng, cin):
    i = L.Input((6, 6, 3))
    h = L.Conv2D(cin, 1)(i)
    g = L.Conv2D(cin, 3, padding="same", groups=2, strides=1)(h)
    out = L.Dense(2)(L.Flatten()(L.add([g, h])))   # h feeds the grouped conv and the Add
    m = cnnbp.Model(i, out, dtype="float64")
    assert cnnbp.gradcheck(m, rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((2, 2)), loss="mse",
                           print_fn=None).ok


def test_separable_conv2d(rng):
    x = rng.standard_normal((2, 7, 7, 3))
    layer = L.SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=2, activation="tanh")
    i = L.Input(x.shape[1:])
    model = cnnbp.Model(i, layer(i), dtype="float64")
    dw, pw, b = layer.get_weights()
    assert dw.shape == (3, 3, 3, 2) and pw.shape == (1, 1, 6, 5) and b.shape == (5,)
    b = rng.standard_normal(5)
    layer.set_weights([dw, pw, b])
    y = model.predict(x, verbose=0)
    mid = ref.depthwise_conv2d(x, dw, None, (2, 2), "same")
    ref.assert_close(y, np.tanh(ref.conv2d(mid, pw, b)), 1e-12)
    assert cnnbp.gradcheck(model, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok
    assert model.count_params() == dw.size + pw.size + b.size


def test_grouped_and_depthwise_equal_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 8, 7, 6))
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2))
    for layer, groups in ((L.DepthwiseConv2D(3, strides=2, depth_multiplier=2), 6), (L.Conv2D(9, 3, groups=3), 3),
                          (L.Conv2D(4, 3, groups=1), 1)):
        i = L.Input(x.shape[1:])
        m = cnnbp.Model(i, layer(i), dtype="float64")
        w, b = layer.get_weights()
        K = b.size
        wt = w.reshape(w.shape[0], w.shape[1], -1, K).transpose(3, 2, 0, 1)   # (K, C/groups, kh, kw)
        t = torch.nn.functional.conv2d(tx, torch.from_numpy(np.ascontiguousarray(wt)), torch.from_numpy(b),
                                       stride=layer.strides, groups=groups)
        ref.assert_close(m.predict(x, verbose=0), t.numpy().transpose(0, 2, 3, 1), 1e-12)


def test_grouped_arguments():
    with pytest.raises(ValueError, match=r"groups \(3\) must divide filters \(4\)"):
        L.Conv2D(4, 3, groups=3)
    i = L.Input((5, 5, 4))
    with pytest.raises(ValueError, match=r"groups \(3\) must divide the input channels \(4\)"):
        cnnbp.Model(i, L.Conv2D(6, 3, groups=3)(i))
    with pytest.raises(ValueError, match="depth_multiplier"):
        L.DepthwiseConv2D(3, depth_multiplier=0)



@pytest.mark.parametrize("batch", [1, 4])
def test_new_convolutions_on_both_thread_counts(rng, threads, batch):
    """Batch 1 and a batch that does not split evenly, on 1 and 2 threads: each kind against its
    numpy reference and finite differences."""
    x = rng.standard_normal((batch, 7, 6, 8))
    cases = [
        (L.Conv2DTranspose(3, 3, strides=2, padding="same"), lambda l: ref.conv2d_transpose(x, *l.get_weights(), (2, 2),
                                                                                          "same")),
        (L.DepthwiseConv2D(3, strides=2, depth_multiplier=2), lambda l: ref.depthwise_conv2d(x, *l.get_weights(),
                                                                                             (2, 2))),
        (L.Conv2D(6, 3, groups=2), lambda l: ref.grouped_conv2d(x, *l.get_weights(), 2)),      # per-group path
        (L.Conv2D(4, 3, groups=4), lambda l: ref.grouped_conv2d(x, *l.get_weights(), 4)),      # the grouped kernel
    ]
    for layer, fn in cases:
        i = L.Input(x.shape[1:])
        m = cnnbp.Model(i, layer(i), dtype="float64")
        y = m.predict(x, verbose=0)
        ref.assert_close(y, fn(layer), 1e-12)
        assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None, samples=4).ok
    xs = rng.standard_normal((batch, 9, 3))
    layer = L.Conv1D(4, 3, padding="causal", dilation_rate=2)
    i = L.Input(xs.shape[1:])
    m = cnnbp.Model(i, layer(i), dtype="float64")
    ref.assert_close(m.predict(xs, verbose=0), ref.conv1d(xs, *layer.get_weights(), 1, "causal", 2), 1e-12)
