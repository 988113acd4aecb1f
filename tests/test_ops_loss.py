"""Losses: values against the classic formulas, gradients against finite differences, and the
fused softmax/sigmoid forms against the unfused ones."""

import numpy as np
import pytest

from cnnbp import ops

import reference as ref
from conftest import ISAS

N, K = 6, 5


def _inputs(rng, kind):
    z = rng.standard_normal((N, K))  # probabilities stay >= ~0.01: h << p for the differences
    if kind == "binary_crossentropy":
        pred = 1 / (1 + np.exp(-z))
        target = rng.uniform(0, 1, (N, K))
    elif kind in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        e = np.exp(z)
        pred = e / e.sum(axis=1, keepdims=True)
        target = rng.dirichlet(np.ones(K), N)
    elif kind == "binary_crossentropy_from_logits":
        pred, target = z, rng.uniform(0, 1, (N, K))
    elif kind == "mean_squared_error":
        pred, target = z, rng.standard_normal((N, K))
    elif kind in ("mean_absolute_error", "log_cosh", "cosine_similarity"):
        pred, target = z, rng.standard_normal((N, K))
    elif kind == "huber":                     # errors on both sides of delta = 1, none near a kink
        e = rng.choice([-1, 1], (N, K)) * rng.uniform(0.1, 2.5, (N, K))
        e[np.abs(np.abs(e) - 1) < 0.05] += 0.2
        target = rng.standard_normal((N, K))
        pred = target + e
    elif kind == "kl_divergence":
        e = np.exp(z)
        pred, target = e / e.sum(axis=1, keepdims=True), rng.dirichlet(np.ones(K), N)
    elif kind in ("hinge", "squared_hinge"):
        pred, target = z, rng.integers(0, 2, (N, K)).astype(np.float64)   # {0, 1}: read as {-1, 1}
    elif kind == "categorical_hinge":
        pred, target = 0.3 * z, np.eye(K)[rng.integers(0, K, N)]
    elif kind == "poisson":
        pred, target = np.exp(0.5 * z), rng.poisson(1.5, (N, K)).astype(np.float64)
    else:
        pred, target = z, rng.dirichlet(np.ones(K), N)
    if kind.startswith("sparse"):
        target = rng.integers(0, K, N).astype(np.float64)
    return pred, target


KINDS = list(ops._LOSSES)   # every C++ kind


@pytest.mark.parametrize("kind", KINDS)
def test_loss_value_and_gradient(rng, kind):
    pred, target = _inputs(rng, kind)
    value, grad, _ = ops.loss(pred, target, kind)
    assert abs(value - ref.loss(pred, target, kind)) < 1e-12 * max(1, abs(value))
    f = lambda: ops.loss(pred, target, kind)[0]
    assert ref.rel_error(grad, ref.numerical_grad(f, pred)) < 1e-6


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", KINDS)
def test_loss_float32_paths(rng, kind, isa):
    pred, target = _inputs(rng, kind)
    v64, g64, c64 = ops.loss(pred, target, kind)
    v32, g32, c32 = ops.loss(pred.astype(np.float32), target.astype(np.float32), kind, isa=isa)
    assert abs(v32 - v64) < 1e-5 * max(1, abs(v64))
    ref.assert_close(g32, g64, 1e-5)


def test_fused_softmax_ce_equals_softmax_then_ce(rng):
    z = rng.standard_normal((N, K))
    t = rng.dirichlet(np.ones(K), N)
    p = ops.softmax(z)
    v_f, g_f, _ = ops.loss(z, t, "categorical_crossentropy_from_logits")
    v_u, g_p, _ = ops.loss(p, t, "categorical_crossentropy")
    assert abs(v_f - v_u) < 1e-12
    ref.assert_close(g_f, ops.softmax_backward(g_p, p), 1e-10)
    labels = rng.integers(0, K, N).astype(float)
    v_s, g_s, _ = ops.loss(z, labels, "sparse_categorical_crossentropy_from_logits")
    v_o, g_o, _ = ops.loss(z, np.eye(K)[labels.astype(int)], "categorical_crossentropy_from_logits")
    assert abs(v_s - v_o) < 1e-12
    ref.assert_close(g_s, g_o, 1e-12)


def test_fused_sigmoid_bce_equals_sigmoid_then_bce(rng):
    z = rng.standard_normal((N, 1))
    t = rng.integers(0, 2, (N, 1)).astype(float)
    s = ops.activation(z, "sigmoid")
    v_f, g_f, _ = ops.loss(z, t, "binary_crossentropy_from_logits")
    v_u, g_p, _ = ops.loss(s, t, "binary_crossentropy")
    assert abs(v_f - v_u) < 1e-10
    ref.assert_close(g_f, ops.activation_backward(g_p, z, s, "sigmoid"), 1e-9)


def test_fused_losses_are_stable_for_extreme_logits():
    z = np.array([[1000.0, -1000.0, 0.0]], dtype=np.float32)
    v, g, _ = ops.loss(z, np.array([[0.0, 1.0, 0.0]], np.float32), "categorical_crossentropy_from_logits")
    assert np.isfinite(v) and abs(v - 2000.0) < 1e-2 and np.all(np.isfinite(g))
    v, g, _ = ops.loss(z.reshape(3, 1), np.array([[0.0], [1.0], [1.0]], np.float32), "binary_crossentropy_from_logits")
    assert np.isfinite(v) and np.all(np.isfinite(g))


def test_correct_counts():
    pred = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], np.float32)
    _, _, c = ops.loss(pred, np.array([[0, 1], [0, 1], [0, 1]], np.float32), "categorical_crossentropy")
    assert c == 2
    _, _, c = ops.loss(pred, np.array([1, 1, 0], np.float32), "sparse_categorical_crossentropy")
    assert c == 1
    _, _, c = ops.loss(np.array([[0.7], [0.2]], np.float32), np.array([[1], [1]], np.float32), "binary_crossentropy")
    assert c == 1


def test_every_kind_is_tested():
    assert len(KINDS) == 16 and len(set(KINDS)) == 16


def test_hinge_keeps_targets_that_are_not_all_binary(rng):
    pred = rng.standard_normal((N, K))
    target = rng.choice([-1.0, 1.0], (N, K))
    for kind in ("hinge", "squared_hinge"):
        value, grad, _ = ops.loss(pred, target, kind)
        assert abs(value - ref.loss(pred, target, kind)) < 1e-12
        # {-1, 1} and the {0, 1} spelling of the same targets give the same loss
        assert abs(ops.loss(pred, (target + 1) / 2, kind)[0] - value) < 1e-12


@pytest.mark.parametrize("delta", [0.5, 1.0, 3.0])
def test_huber_delta(rng, delta):
    target = rng.standard_normal((N, K))
    pred = target + rng.uniform(-4, 4, (N, K))
    e = pred - target
    expect = np.mean(np.where(np.abs(e) <= delta, 0.5 * e ** 2, delta * (np.abs(e) - 0.5 * delta)))
    value, grad, _ = ops.loss(pred, target, "huber", delta=delta)
    assert abs(value - expect) < 1e-12
    ref.assert_close(grad, np.clip(e, -delta, delta) / e.size, 1e-12)


def test_log_cosh_and_cosine_are_finite_at_extremes():
    pred = np.array([[1e4, -1e4, 0.0]])
    value, grad, _ = ops.loss(pred, np.zeros((1, 3)), "log_cosh")
    assert np.isfinite(value) and abs(value - (2e4 - 2 * np.log(2)) / 3) < 1e-9
    assert np.allclose(grad, [[1 / 3, -1 / 3, 0]])
    value, grad, _ = ops.loss(np.zeros((2, 3)), np.ones((2, 3)), "cosine_similarity")   # |p| = 0
    assert value == 0 and np.all(np.isfinite(grad))
