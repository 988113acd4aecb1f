"""Activations, softmax and dropout against the reference and finite differences."""

import numpy as np
import pytest

from cnnbp import ops

import reference as ref
from conftest import ISAS

KINDS = list(ops._ACT)   # every C++ kind
ALPHA = {"leaky_relu": 0.1, "elu": 0.7, "relu_max": 2.0}   # each kind's parameter, where it has one


def test_every_kind_is_tested():
    assert KINDS == ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "swish",
                     "softplus", "hard_sigmoid", "relu_max"]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", KINDS)
def test_activation_matches_reference(rng, kind, isa, threads):
    a = ALPHA.get(kind, 0.1)
    x = (rng.standard_normal((37, 129)) * 4).astype(np.float32)
    y = ops.activation(x, kind, alpha=a, isa=isa)
    ref.assert_close(y, ref.activation(x, kind, a), 1e-6, kind)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = ops.activation_backward(dy, x, y, kind, alpha=a, isa=isa)
    ref.assert_close(dx, ref.activation_backward(dy, x.astype(np.float64), kind, a), 1e-5, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_activation_finite_differences(rng, kind):
    a = ALPHA.get(kind, 0.1)
    x = 2 * rng.standard_normal((4, 7))
    for kink in (0.0, 3.0, -3.0, a):   # away from the kinks of relu, hard_sigmoid and relu_max
        x[np.abs(x - kink) < 1e-3] = 0.5
    G = rng.standard_normal(x.shape)
    f = lambda: float(np.sum(ops.activation(x, kind, a) * G))
    dx = ops.activation_backward(G, x, ops.activation(x, kind, a), kind, a)
    assert ref.rel_error(dx, ref.numerical_grad(f, x)) < 1e-6


def test_sigmoid_and_softmax_are_stable_for_large_inputs():
    x = np.array([[-1000.0, 0.0, 1000.0]], dtype=np.float32)
    s = ops.activation(x, "sigmoid")
    assert np.all(np.isfinite(s)) and s[0, 0] == 0 and s[0, 2] == 1
    sm = ops.softmax(x)
    assert np.all(np.isfinite(sm)) and sm[0, 2] == 1


def test_dropout_scaling_rate_and_determinism(rng):
    x = np.ones((200, 500), dtype=np.float32)
    y, mask = ops.dropout(x, 0.3, seed=7, stream=3)
    kept = mask != 0
    assert abs(kept.mean() - 0.7) < 0.01
    assert np.allclose(y[kept], 1 / 0.7)
    assert np.all(y[~kept] == 0)
    y2, _ = ops.dropout(x, 0.3, seed=7, stream=3)
    assert np.array_equal(y, y2)
    y3, _ = ops.dropout(x, 0.3, seed=7, stream=4)
    assert not np.array_equal(y, y3)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    assert np.array_equal(ops.dropout_backward(dy, mask), dy * mask)
    y0, m0 = ops.dropout(x, 0.0)
    assert np.array_equal(y0, x)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", KINDS)
def test_activations_propagate_nan(kind, isa):
    x = np.array([[np.nan, 1.0, -1.0]], dtype=np.float32)
    assert np.isnan(ops.activation(x, kind, isa=isa)[0, 0])
