"""Whole networks in float64 through the portable path: the gradient the C++ network computes for
every parameter and for the input equals finite differences of its loss, for each loss."""

import numpy as np
import pytest

import cnnbp
from cnnbp import ops
from cnnbp.layers import (AveragePooling2D, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D, Input,
                          MaxPooling2D)

import reference as ref


def _net(last_units, last_act, pool="max"):
    x = Input((7, 6, 2))
    y = Conv2D(3, (3, 3), padding="same", activation="tanh")(x)
    y = (MaxPooling2D((2, 2)) if pool == "max" else AveragePooling2D((2, 2), padding="same"))(y)
    y = Conv2D(4, (2, 2), strides=(1, 1), activation="leaky_relu")(y)
    y = Flatten()(y)
    y = Dense(5, activation="sigmoid")(y)
    y = Dense(last_units, activation=last_act)(y)
    return cnnbp.Model(x, y, dtype="float64")


CASES = [
    ("categorical_crossentropy", 4, "softmax", True),
    ("categorical_crossentropy", 4, "softmax", False),
    ("sparse_categorical_crossentropy", 4, "softmax", True),
    ("binary_crossentropy", 1, "sigmoid", True),
    ("binary_crossentropy", 3, "sigmoid", False),
    ("mean_squared_error", 3, None, True),
    ("mean_squared_error", 2, "tanh", True),
]


def _targets(rng, loss, n, k):
    if loss == "sparse_categorical_crossentropy":
        return rng.integers(0, k, n).astype(float)
    if loss == "categorical_crossentropy":
        return np.eye(k)[rng.integers(0, k, n)]
    if loss == "binary_crossentropy":
        return rng.integers(0, 2, (n, k)).astype(float)
    return rng.standard_normal((n, k))


@pytest.mark.parametrize("loss,k,act,fuse", CASES, ids=[f"{c[0]}-{c[2]}-{'fused' if c[3] else 'unfused'}" for c in CASES])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_network_gradients_match_finite_differences(loss, k, act, fuse, pool):
    cnnbp.set_seed(3)
    rng = np.random.default_rng(5)
    model = _net(k, act, pool)
    model.compile(optimizer="sgd", loss=loss, fuse_loss=fuse)
    net = model.network
    assert net.loss_fused == (fuse and act in ("softmax", "sigmoid") and loss != "mean_squared_error")
    x = rng.standard_normal((3, 7, 6, 2))
    y = _targets(rng, loss, 3, k)
    net.forward(x, training=True)
    loss_value, _, dx = net.backward(y, input_grad=True)
    grads = np.array(net.flat_grads())
    params = net.flat_params()

    def f():
        return net.evaluate(x, y)[0]

    assert abs(f() - loss_value) < 1e-12
    num = ref.numerical_grad(f, params)
    assert ref.rel_error(grads, num) < 1e-6
    num_x = ref.numerical_grad(f, x)
    assert ref.rel_error(dx, num_x) < 1e-6


@pytest.mark.parametrize("pool_args", [((2, 2), None, "valid"), ((2, 2), (1, 1), "same"), ((3, 3), (2, 2), "same")])
def test_relu_convolution_into_max_pooling(pool_args):
    # A convolution with activation='relu' read only by a max pooling: the pooling's backward
    # applies the ReLU's derivative (the convolution skips its own pass). Whole-network gradients
    # against finite differences, and the gradient at the convolution's output (what Grad-CAM
    # reads) is still the one after the ReLU: pooling's plain gradient, not the masked one.
    pool, st, pad = pool_args
    cnnbp.set_seed(4)
    rng = np.random.default_rng(6)
    x_in = Input((8, 7, 2))
    c1 = Conv2D(5, (3, 3), padding="same", activation="relu")
    p1 = MaxPooling2D(pool, strides=st, padding=pad)
    y = Flatten()(p1(c1(x_in)))
    y = Dense(3, activation="softmax")(y)
    model = cnnbp.Model(x_in, y, dtype="float64")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    net = model.network
    x = rng.standard_normal((3, 8, 7, 2))
    t = np.eye(3)[rng.integers(0, 3, 3)]
    net.forward(x, training=True)
    loss_value, _, dx = net.backward(t, input_grad=True)
    grads = np.array(net.flat_grads())
    f = lambda: net.evaluate(x, t)[0]
    assert abs(f() - loss_value) < 1e-12
    assert ref.rel_error(grads, ref.numerical_grad(f, net.flat_params())) < 1e-6
    assert ref.rel_error(dx, ref.numerical_grad(f, x)) < 1e-6

    ci, pi = model.layers.index(c1), model.layers.index(p1)
    net.forward(x, training=False, keep=[ci])
    a = net.activation(ci)
    assert (a == 0).any()
    dout = rng.standard_normal((3, 3))
    g_pool = net.backward_to(dout, len(model.layers), pi)
    g_conv = net.backward_to(dout, len(model.layers), ci)
    np.testing.assert_array_equal(g_conv, ops.max_pool2d_backward(g_pool, a, pool, st, pad))
    assert not np.array_equal(g_conv, ops.max_pool2d_backward(g_pool, a, pool, st, pad, relu=True))


def test_global_average_pool_and_dropout_network_gradients():
    cnnbp.set_seed(4)
    rng = np.random.default_rng(6)
    model = cnnbp.Sequential([Input((5, 5, 3)), Conv2D(4, 3, padding="same", activation="relu"),
                              Dropout(0.0), GlobalAveragePooling2D(), Dense(3, activation="softmax")], dtype="float64")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    net = model.network
    x = rng.standard_normal((4, 5, 5, 3))
    y = np.eye(3)[[0, 1, 2, 1]]
    net.forward(x, training=True)
    net.backward(y)
    grads = np.array(net.flat_grads())
    num = ref.numerical_grad(lambda: net.evaluate(x, y)[0], net.flat_params())
    assert ref.rel_error(grads, num) < 1e-6


def test_dropout_gradient_uses_the_forward_mask():
    cnnbp.set_seed(8)
    model = cnnbp.Sequential([Input((20,)), Dense(30, activation="tanh"), Dropout(0.5, seed=11), Dense(2)],
                             dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    net = model.network
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 20)), rng.standard_normal((4, 2))
    net.forward(x, training=True)
    h = net.activation(0)  # dense + tanh (fused), then dropout
    mask_out = net.activation(1) / np.where(h == 0, 1, h)
    net.backward(y)
    grads = np.array(net.flat_grads())
    # Reproduce the same mask with ops.dropout and differentiate the masked network numerically.
    _, mask = cnnbp.ops.dropout(np.ones((4, 30)), 0.5, seed=11, stream=0)
    assert np.allclose(mask_out[h != 0], mask[h != 0])
    w1, b1, w2, b2 = model.get_weights()

    def loss_with(params):
        a, b_, c, d = params
        h = np.tanh(x @ a + b_) * mask
        return np.mean((h @ c + d - y) ** 2)

    ws = [w1, b1, w2, b2]
    num = []
    for i in range(4):
        num.append(ref.numerical_grad(lambda: loss_with(ws), ws[i]).reshape(-1))
    layer_grads = [model.layers[0]._view("kernel", True), model.layers[0]._view("bias", True),
                   model.layers[2]._view("kernel", True), model.layers[2]._view("bias", True)]
    assert ref.rel_error(np.concatenate([g.reshape(-1) for g in layer_grads]), np.concatenate(num)) < 1e-6
    assert grads.shape[0] >= sum(g.size for g in layer_grads)


def test_float32_network_agrees_with_float64():
    rng = np.random.default_rng(7)
    cnnbp.set_seed(9)
    m64 = _net(4, "softmax")
    x = Input((7, 6, 2))
    y = Conv2D(3, (3, 3), padding="same", activation="tanh")(x)
    y = MaxPooling2D((2, 2))(y)
    y = Conv2D(4, (2, 2), activation="leaky_relu")(y)
    y = Dense(4, activation="softmax")(Dense(5, activation="sigmoid")(Flatten()(y)))
    m32 = cnnbp.Model(x, y)
    m32.set_weights(m64.get_weights())
    for m in (m32, m64):
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
    xb = rng.standard_normal((8, 7, 6, 2))
    yb = np.eye(4)[rng.integers(0, 4, 8)]
    for m in (m32, m64):
        m.network.forward(xb, training=True)
        m.network.backward(yb)
    ref.assert_close(m32.network.flat_grads(), m64.network.flat_grads(), 1e-4)
    ref.assert_close(m32.predict(xb), m64.predict(xb), 1e-5)


def test_backward_after_an_inference_forward_uses_that_batch():
    """A backward pass may follow an inference forward pass (saliency maps): max pooling must
    route with the arg-max of that batch, never a stale one."""
    cnnbp.set_seed(6)
    m = _net(4, "softmax")
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    net = m.network
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((3, 7, 6, 2)), rng.standard_normal((3, 7, 6, 2))
    y = np.eye(4)[[0, 1, 2]]
    net.forward(x2, training=True)
    net.backward(y)
    expected = np.array(net.flat_grads())
    net.forward(x1, training=True)
    net.backward(y)
    net.forward(x2, training=False)
    net.backward(y)
    assert np.array_equal(np.array(net.flat_grads()), expected)


@pytest.mark.parametrize("act", ["elu", "selu", "gelu", "swish", "silu", "softplus", "hard_sigmoid", "relu6"])
def test_keras_activations_in_layers_backpropagate_exactly(act):
    """Each activation after a Conv2D and a Dense (fused into the layer where its derivative is a
    function of the output, else an Activation node of its own), and as an Activation layer."""
    from cnnbp.layers import Activation, Conv2D, Dense, Flatten, Input
    cnnbp.set_seed(4)
    x = Input((6, 6, 2))
    h = Conv2D(3, 3, activation=act)(x)
    h = Activation(act)(Dense(5)(Flatten()(h)))
    y = Dense(3, activation=act)(h)
    model = cnnbp.Model(x, y, dtype="float64")
    rng = np.random.default_rng(1)
    xs, ys = rng.standard_normal((3, 6, 6, 2)), rng.standard_normal((3, 3))
    res = cnnbp.gradcheck(model, xs, ys, loss="mse", print_fn=None)
    assert res.ok, res
    fused = act == "relu6"
    assert len(model.network.layer_info()) == (5 if fused else 7)   # own Activation nodes for the others


def test_relu_max_value_elu_layer_and_their_configs(tmp_path):
    from cnnbp.layers import ELU, Dense, Input, ReLU
    cnnbp.set_seed(2)
    m = cnnbp.Sequential([Input((4,)), Dense(6), ReLU(max_value=1.5), Dense(3), ELU(alpha=0.5)])
    x = np.random.default_rng(0).standard_normal((8, 4)) * 3
    h = np.clip(x @ m.layers[0].get_weights()[0] + m.layers[0].get_weights()[1], 0, 1.5)
    z = h @ m.layers[2].get_weights()[0] + m.layers[2].get_weights()[1]
    expect = np.where(z > 0, z, 0.5 * np.expm1(np.minimum(z, 0)))
    assert np.allclose(m.predict(x.astype(np.float32), verbose=0), expect, atol=1e-5)
    m.save(tmp_path / "m.cnnbp")
    back = cnnbp.load_model(tmp_path / "m.cnnbp")
    assert back.layers[1].max_value == 1.5 and back.layers[3].alpha == 0.5
    assert np.array_equal(back.predict(x.astype(np.float32), verbose=0), m.predict(x.astype(np.float32), verbose=0))
    with pytest.raises(ValueError, match="max_value must be a number > 0"):
        ReLU(max_value=0)
    with pytest.raises(ValueError, match="unknown activation 'mish'.*'gelu'"):
        Dense(2, activation="mish")
