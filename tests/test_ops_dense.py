"""Dense forward and backward against the reference and finite differences."""

import numpy as np
import pytest

from cnnbp import ops

import reference as ref
from conftest import ISAS

# Narrow outputs (O <= 16) read the weights in place with a copied last K block: K below, at and
# past one 256-row block, O at and around the AVX2 and AVX-512 vector widths.
SHAPES = [(1, 1, 1), (2, 3, 5), (32, 5408, 10), (7, 17, 33), (64, 256, 120), (5, 100, 1), (3, 1, 5), (9, 2, 1),
          (17, 300, 10), (5, 513, 16), (4, 257, 9), (6, 256, 8), (33, 1000, 15)]


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


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("O", [1, 7, 10, 15])
def test_dense_narrow_columns_do_not_mix(rng, O, isa, threads):
    # A narrow layer's weight rows are loaded a vector at a time, running into the next row: a NaN
    # in one column of W must reach only that column of y, and one in a column of dy only that column of dw.
    x = rng.standard_normal((5, 300)).astype(np.float32)
    w = rng.standard_normal((300, O)).astype(np.float32)
    w[::7, 0] = np.nan
    y = ops.dense(x, w, np.zeros(O, np.float32), isa=isa)
    assert np.isnan(y[:, 0]).all()
    ref.assert_close(y[:, 1:], ref.dense(x, w[:, 1:], np.zeros(O - 1)), 1e-5)
    dy = rng.standard_normal((5, O)).astype(np.float32)
    dy[:, 0] = np.nan
    dw = ops.dense_backward_weight(dy, x, isa=isa)
    assert np.isnan(dw[:, 0]).all()
    ref.assert_close(dw[:, 1:], x.astype(np.float64).T @ dy[:, 1:], 1e-5)


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
