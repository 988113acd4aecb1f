"""Dense forward and backward against the reference and finite differences."""

import numpy as np
import pytest

from cnnbp import ops

import reference as ref
from conftest import ISAS

SHAPES = [(1, 1, 1), (2, 3, 5), (32, 5408, 10), (7, 17, 33), (64, 256, 120), (5, 100, 1)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("N,I,O", SHAPES)
def test_dense_matches_reference(rng, N, I, O, isa, threads):
    x = rng.standard_normal((N, I)).astype(np.float32)
    w = rng.standard_normal((I, O)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    y = ops.dense(x, w, b, isa=isa)
    ref.assert_close(y, ref.dense(x, w, b), 1e-5)
    dy = rng.standard_normal((N, O)).astype(np.float32)
    dx_r, dw_r, db_r = ref.dense_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64))
    ref.assert_close(ops.dense_backward_data(dy, w, isa=isa), dx_r, 1e-5)
    base = rng.standard_normal((N, I)).astype(np.float32)  # the accumulate mode adds into it
    ref.assert_close(ops.dense_backward_data(dy, w, add_to=base, isa=isa), base + dx_r, 1e-5)
    ref.assert_close(ops.dense_backward_weight(dy, x, isa=isa), dw_r, 1e-5)
    ref.assert_close(ops.dense_backward_bias(dy, isa=isa), db_r, 1e-5)


def test_dense_finite_differences(rng):
    x = rng.standard_normal((4, 6))
    w = rng.standard_normal((6, 3))
    b = rng.standard_normal(3)
    G = rng.standard_normal((4, 3))
    f = lambda: float(np.sum(ops.dense(x, w, b) * G))
    assert ref.rel_error(ops.dense_backward_data(G, w), ref.numerical_grad(f, x)) < 1e-6
    assert ref.rel_error(ops.dense_backward_weight(G, x), ref.numerical_grad(f, w)) < 1e-6
    assert ref.rel_error(ops.dense_backward_bias(G), ref.numerical_grad(f, b)) < 1e-6


@pytest.mark.parametrize("isa", ISAS)
def test_dense_zero_sized_dimensions(isa):
    b = np.arange(3, dtype=np.float32)
    y = ops.dense(np.zeros((2, 0), np.float32), np.zeros((0, 3), np.float32), b, isa=isa)
    assert np.array_equal(y, np.tile(b, (2, 1)))  # an empty sum: the bias
    assert ops.dense(np.zeros((0, 4), np.float32), np.ones((4, 3), np.float32), isa=isa).shape == (0, 3)
    assert ops.dense(np.ones((2, 4), np.float32), np.ones((4, 0), np.float32), isa=isa).shape == (2, 0)
    dw = ops.dense_backward_weight(np.zeros((0, 3), np.float32), np.zeros((0, 4), np.float32), isa=isa)
    assert dw.shape == (4, 3) and not dw.any()
    assert ops.dense_backward_data(np.ones((2, 0), np.float32), np.ones((4, 0), np.float32), isa=isa).shape == (2, 4)
