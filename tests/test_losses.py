"""cnnbp.losses: Keras's names and aliases, the loss objects and functions on numpy, each loss
training a model, save/load of a loss's configuration, and the message for a Python loss function."""

import numpy as np
import pytest

import cnnbp
from cnnbp import losses
from cnnbp.layers import Dense, Input

import reference as ref

CLASSES = [losses.MeanSquaredError, losses.BinaryCrossentropy, losses.CategoricalCrossentropy,
           losses.SparseCategoricalCrossentropy, losses.MeanAbsoluteError, losses.Huber, losses.LogCosh,
           losses.KLDivergence, losses.Hinge, losses.SquaredHinge, losses.CategoricalHinge, losses.Poisson,
           losses.CosineSimilarity]

KERAS_STRINGS = {   # every spelling a Keras program may pass to compile(loss=...)
    "mse": losses.MeanSquaredError, "MSE": losses.MeanSquaredError, "mean_squared_error": losses.MeanSquaredError,
    "mae": losses.MeanAbsoluteError, "MAE": losses.MeanAbsoluteError,
    "mean_absolute_error": losses.MeanAbsoluteError, "huber": losses.Huber, "huber_loss": losses.Huber,
    "log_cosh": losses.LogCosh, "logcosh": losses.LogCosh, "kld": losses.KLDivergence,
    "kl_divergence": losses.KLDivergence, "kullback_leibler_divergence": losses.KLDivergence,
    "hinge": losses.Hinge, "squared_hinge": losses.SquaredHinge, "categorical_hinge": losses.CategoricalHinge,
    "poisson": losses.Poisson, "cosine_similarity": losses.CosineSimilarity,
    "binary_crossentropy": losses.BinaryCrossentropy, "categorical_crossentropy": losses.CategoricalCrossentropy,
    "sparse_categorical_crossentropy": losses.SparseCategoricalCrossentropy,
}


@pytest.mark.parametrize("name", sorted(KERAS_STRINGS))
def test_keras_strings(name):
    assert type(losses.get(name)) is KERAS_STRINGS[name]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_class_name_and_object_call(cls, rng):
    assert type(losses.get(cls.__name__)) is cls and type(losses.get(cls)) is cls
    loss = cls()
    y_pred = rng.uniform(0.05, 0.95, (4, 3))
    y_true = np.eye(3)[[0, 1, 2, 1]]
    if loss.sparse:
        y_true = np.array([0, 1, 2, 1])
    assert abs(loss(y_true, y_pred) - ref.loss(y_pred, y_true.astype(float), loss.kind)) < 1e-12


def test_module_functions():
    rng = np.random.default_rng(3)
    t, p = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    assert abs(losses.mae(t, p) - np.mean(np.abs(p - t))) < 1e-12
    assert abs(losses.log_cosh(t, p) - np.mean(np.log(np.cosh(p - t)))) < 1e-12
    assert abs(losses.huber(t, p, delta=0.5) - losses.Huber(0.5)(t, p)) == 0
    cos = np.sum(t * p, 1) / np.linalg.norm(t, axis=1) / np.linalg.norm(p, axis=1)
    assert abs(losses.cosine_similarity(t, p) + np.mean(cos)) < 1e-12
    for f in (losses.hinge, losses.squared_hinge, losses.categorical_hinge, losses.kl_divergence):
        assert np.isfinite(f(np.abs(t), np.abs(p)))
    assert abs(losses.poisson(np.abs(t), np.abs(p)) - ref.loss(np.abs(p), np.abs(t), "poisson")) < 1e-12


@pytest.mark.parametrize("name,target", [
    ("mae", "reg"), ("huber", "reg"), ("log_cosh", "reg"), ("poisson", "count"), ("cosine_similarity", "reg"),
    ("kld", "prob"), ("categorical_hinge", "onehot"), ("hinge", "binary"), ("squared_hinge", "binary")])
def test_each_loss_trains_a_model(name, target):
    """Fifty full-batch steps on a learnable task lower every loss by a clear margin."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    w = rng.standard_normal((6, 3))
    z = x @ w
    act = None
    if target == "reg":
        y = z
    elif target == "count":
        y, act = rng.poisson(np.exp(0.3 * z)), "softplus"
    elif target == "prob":
        e = np.exp(z)
        y, act = e / e.sum(1, keepdims=True), "softmax"
    elif target == "onehot":
        y = np.eye(3)[z.argmax(1)]
    else:
        y = (z > 0).astype(float)
    cnnbp.set_seed(1)
    inp = Input((6,))
    model = cnnbp.Model(inp, Dense(3, activation=act if act != "softplus" else "relu")(Dense(16, activation="tanh")(inp)))
    if act == "softplus":   # a positive rate for Poisson: relu plus a floor through the targets' scale
        y = y + 0.5
    model.compile(optimizer=cnnbp.optimizers.Adam(0.02), loss=name)
    y = y.astype(np.float32)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=64, epochs=50, verbose=0, shuffle=False)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before - 0.1 * abs(before) - 1e-3, (name, before, after)


def test_huber_delta_survives_save_and_load(tmp_path):
    inp = Input((3,))
    model = cnnbp.Model(inp, Dense(2)(inp))
    model.compile(optimizer="rmsprop", loss=losses.Huber(delta=0.25))
    model.save(tmp_path / "h.cnnbp")
    back = cnnbp.load_model(tmp_path / "h.cnnbp")
    assert isinstance(back.loss, losses.Huber) and back.loss.delta == 0.25
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    y = np.zeros((8, 2), np.float32)
    assert model.evaluate(x, y, verbose=0) == back.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1"])
def test_huber_rejects_bad_delta(bad):
    with pytest.raises(ValueError, match="Huber: delta"):
        losses.Huber(bad)


def test_a_python_loss_function_is_refused_with_the_reason():
    inp = Input((3,))
    model = cnnbp.Model(inp, Dense(2)(inp))

    def my_loss(y_true, y_pred):
        return ((y_true - y_pred) ** 2).mean()

    with pytest.raises(TypeError, match="my_loss.*computes the loss and its gradient in C\\+\\+"):
        model.compile(optimizer="adam", loss=my_loss)


def test_unknown_loss_lists_the_known_ones():
    with pytest.raises(ValueError, match="'mean_absolute_error'.*'cosine_similarity'"):
        losses.get("mean_absolut_error")


@pytest.mark.parametrize("kind", ["categorical", "sparse", "binary"])
@pytest.mark.parametrize("from_logits", [False, True])
def test_label_smoothing_in_the_step_and_the_loss_object(rng, kind, from_logits):
    """The step's loss and its gradient equal the unsmoothed loss on targets t(1 - s) + s/K
    (binary: + s/2), with or without the fused softmax/sigmoid; metrics read the labels as given."""
    s, k = 0.2, 1 if kind == "binary" else 4
    act = "sigmoid" if kind == "binary" else "softmax"
    x = rng.standard_normal((6, 5))
    labels = rng.integers(0, 2 if kind == "binary" else k, 6)
    y = labels[:, None].astype(np.float64) if kind == "binary" else (labels if kind == "sparse" else np.eye(k)[labels])
    dense_t = y if kind == "binary" else np.eye(k)[labels]
    smooth_t = dense_t * (1 - s) + (s / 2 if kind == "binary" else s / k)
    cls = {"categorical": losses.CategoricalCrossentropy, "sparse": losses.SparseCategoricalCrossentropy,
           "binary": losses.BinaryCrossentropy}[kind]
    plain = losses.BinaryCrossentropy if kind == "binary" else losses.CategoricalCrossentropy

    def model(loss):
        cnnbp.set_seed(3)
        i = Input((5,))
        m = cnnbp.Model(i, Dense(k, activation=None if from_logits else act)(i), dtype="float64")
        m.compile(optimizer=cnnbp.optimizers.SGD(0.1), loss=loss, metrics=["accuracy"])
        return m
    a = model(cls(from_logits=from_logits, label_smoothing=s))
    b = model(plain(from_logits=from_logits))
    la = a.evaluate(x, y, verbose=0, return_dict=True)
    lb = b.evaluate(x, smooth_t, verbose=0, return_dict=True)
    assert abs(la["loss"] - lb["loss"]) < 1e-12
    pred = a.predict(x, verbose=0)
    assert abs(cls(from_logits=from_logits, label_smoothing=s)(y, pred) - la["loss"]) < 1e-6
    a.train_on_batch(x, y)
    b.train_on_batch(x, smooth_t)
    assert all(np.allclose(u, v, rtol=0, atol=1e-12) for u, v in zip(a.get_weights(), b.get_weights()))
    assert cls(label_smoothing=s).get_config()["label_smoothing"] == s
    with pytest.raises(ValueError, match="label_smoothing"):
        cls(label_smoothing=1.5)


def test_label_smoothing_only_on_cross_entropies():
    i = Input((3,))
    m = cnnbp.Model(i, Dense(2)(i))
    m.compile(optimizer="sgd", loss=losses.CategoricalCrossentropy(label_smoothing=0.1))
    assert m.loss.label_smoothing == 0.1
    with pytest.raises(TypeError):
        losses.MeanSquaredError(label_smoothing=0.1)
