"""cnnbp.gradcheck: passes on models with every layer kind, fails (naming the layer) when a gradient
is wrong, skips frozen layers, leaves the model untouched, and refuses bad arguments."""

import io

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L


def _every_kind_model():
    """One graph with every layer kind: strided/dilated convolutions, all poolings, padding and
    cropping, BatchNormalization (batch statistics), Dropout (fixed masks), every activation and
    merge, Concatenate, Flatten, Identity."""
    i = L.Input((9, 8, 2))
    a = L.Conv2D(3, 3, padding="same", activation="tanh")(i)
    a = L.BatchNormalization()(a)
    a = L.ReLU()(a)
    b = L.Conv2D(3, (2, 3), strides=(1, 2), padding="same", dilation_rate=1, activation="sigmoid")(i)
    b = L.ZeroPadding2D(((1, 1), (3, 3)))(b)
    b = L.Cropping2D(((1, 1), (1, 1)))(b)
    c = L.Conv2D(3, 2, dilation_rate=2, padding="same", activation="leaky_relu")(i)
    s = L.Add()([a, b])
    d = L.Subtract()([s, c])
    e = L.Multiply()([d, a])
    f = L.Average()([e, b, c])
    g = L.Maximum()([f, a])
    h = L.Concatenate()([g, L.Identity()(c)])
    h = L.LeakyReLU(0.1)(h)
    p1 = L.MaxPooling2D(2, padding="same")(h)
    p2 = L.AveragePooling2D(2, padding="same")(h)
    m = L.Concatenate()([p1, p2])
    g1 = L.GlobalAveragePooling2D()(m)
    g2 = L.GlobalMaxPooling2D()(m)
    flat = L.Flatten()(L.Dropout(0.3)(m))
    z = L.Concatenate()([g1, g2, L.Dense(4, activation="tanh")(flat)])
    out = L.Dense(3, activation="softmax")(L.Activation("relu")(L.Dense(6)(z)))
    return cnnbp.Model(i, out)


def _data(n=3, shape=(9, 8, 2), k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + shape).astype(np.float32), rng.integers(0, k, n)


def test_gradcheck_passes_on_every_layer_kind():
    cnnbp.set_seed(2)
    model = _every_kind_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = _data()
    out = io.StringIO()
    res = cnnbp.gradcheck(model, x, y, samples=4, print_fn=lambda s: out.write(s + "\n"))
    text = out.getvalue()
    assert res.ok and res.max_error < 1e-6, text
    kinds = {r["kind"] for r in res.rows}
    assert {"Conv2D", "Dense", "BatchNormalization"} <= kinds
    assert sum(r["checked"] for r in res.rows) >= 40
    assert "backpropagation agrees with finite differences" in text and "batch_normalization" in text


@pytest.mark.parametrize("loss,k,act", [("categorical_crossentropy", 4, "softmax"), ("binary_crossentropy", 2, "sigmoid"),
                                        ("mean_squared_error", 3, None)])
def test_gradcheck_passes_for_each_loss_and_inference_mode(loss, k, act):
    cnnbp.set_seed(3)
    model = cnnbp.Sequential([L.Input((6, 6, 1)), L.Conv2D(2, 3, activation="relu"), L.BatchNormalization(),
                              L.Flatten(), L.Dense(k, activation=act)])
    model.compile(optimizer="sgd", loss=loss)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 6, 1))
    y = np.eye(k)[rng.integers(0, k, 4)] if loss != "mean_squared_error" else rng.standard_normal((4, k))
    for training in (True, False):
        res = cnnbp.gradcheck(model, x, y, training=training, print_fn=None)
        assert res.ok, (training, res.table())


def test_gradcheck_reports_a_wrong_gradient_and_names_the_layer():
    """The test hook scales one layer's backpropagated gradient by 1.001: a 1e-3 relative error,
    far above the tolerance, in that layer's rows only."""
    cnnbp.set_seed(4)
    model = cnnbp.Sequential([L.Input((5, 5, 2)), L.Conv2D(3, 3, name="c1"), L.Flatten(), L.Dense(2, name="d1")])
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((3, 5, 5, 2)), rng.standard_normal((3, 2))
    out = []
    res = cnnbp.gradcheck(model, x, y, print_fn=out.append, _scale_gradient={"c1": 1.001})
    assert not res.ok and not res
    bad = {(r["layer"], r["weight"]) for r in res.rows if not r["ok"]}
    assert bad == {("c1", "kernel"), ("c1", "bias")}
    assert 5e-4 < res.max_error < 2e-3
    assert "WRONG gradients in c1 kernel, c1 bias" in out[-1]


def test_gradcheck_skips_frozen_layers_and_leaves_the_model_untouched():
    cnnbp.set_seed(5)
    model = cnnbp.Sequential([L.Input((4, 4, 1)), L.Conv2D(2, 2, name="frozen"), L.Flatten(), L.Dense(2)])
    model.get_layer("frozen").trainable = False
    model.compile(optimizer="adam", loss="mse")
    x, y = np.ones((2, 4, 4, 1), np.float32), np.zeros((2, 2), np.float32)
    before = [w.copy() for w in model.get_weights()]
    iters = model.network.iterations
    res = cnnbp.gradcheck(model, x, y, print_fn=None)
    assert res.ok
    frozen = [r for r in res.rows if r["layer"] == "frozen"]
    assert frozen and all(r["checked"] == 0 and "(frozen)" in r["weight"] for r in frozen)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.network.iterations == iters and model.dtype == np.float32


def test_gradcheck_arguments():
    model = cnnbp.Sequential([L.Input((3,)), L.Dense(2)])
    x, y = np.ones((2, 3)), np.ones((2, 2))
    with pytest.raises(ValueError, match="not compiled; pass loss"):
        cnnbp.gradcheck(model, x, y)
    assert cnnbp.gradcheck(model, x, y, loss="mse", print_fn=None).ok
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="samples must be >= 1"):
        cnnbp.gradcheck(model, x, y, samples=0)
    with pytest.raises(ValueError, match="h and tol must be > 0"):
        cnnbp.gradcheck(model, x, y, h=0)
    with pytest.raises(TypeError, match="expected a cnnbp model"):
        cnnbp.gradcheck("model", x, y)
    with pytest.raises(ValueError, match="expected input of shape"):
        cnnbp.gradcheck(model, np.ones((2, 4)), y)
