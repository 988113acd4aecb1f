"""Batch normalisation kernels against the numpy reference and finite differences."""

import numpy as np
import pytest

from cnnbp import ops

import reference as ref
from conftest import ISAS

# input shapes: channels-last images (odd sizes, 1 and many channels, batch 1) and dense rows;
# 29 channels take every channel tile of the sums (16, 8, 4, 1) over several runs of rows, as do
# the 2,500 rows of one channel
SHAPES = [(2, 5, 7, 3), (1, 4, 4, 1), (3, 3, 5, 17), (4, 2, 2, 64), (8, 33), (2, 9, 9, 16), (5, 1),
          (3, 9, 11, 29), (2500, 1)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batch_norm_matches_reference(rng, shape, isa, threads):
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    c = shape[-1]
    gamma = rng.standard_normal(c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    y, mean, var = ops.batch_norm(x, gamma, beta, 1e-3, isa=isa)
    y_ref, m_ref, v_ref = ref.batch_norm(x.astype(np.float64), gamma, beta, 1e-3)
    ref.assert_close(mean, m_ref, 1e-6, "mean")
    ref.assert_close(var, v_ref, 1e-5, "var")
    ref.assert_close(y, y_ref, 1e-5, "y")
    dy = rng.standard_normal(shape).astype(np.float32)
    dx, dg, db = ops.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, isa=isa)
    dx_ref, dg_ref, db_ref = ref.batch_norm_backward(dy.astype(np.float64), x.astype(np.float64), gamma, 1e-3)
    ref.assert_close(dg, dg_ref, 1e-5, "dgamma")
    ref.assert_close(db, db_ref, 1e-5, "dbeta")
    ref.assert_close(dx, dx_ref, 1e-4, "dx")


@pytest.mark.parametrize("isa, dtype", [(i, np.float32) for i in ISAS] + [(None, np.float64)])
@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_is_the_same_on_every_thread_count(rng, isa, dtype, relu):
    """Rows are summed in fixed blocks, not one range per thread: statistics and gradients have
    the same bits on 1, 2, 3, 4 and 8 threads (rows below, at and above the block count, and
    enough for 8 threads; in float64 the sums' own rounding shows)."""
    import cnnbp
    for shape in [(5, 3), (16, 4), (37, 7, 9, 24), (64, 33), (64, 16, 16, 8)]:
        x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        c = shape[-1]
        gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
        out = []
        for t in (1, 2, 3, 4, 8):
            cnnbp.set_num_threads(t)
            y, mean, var = ops.batch_norm(x, gamma, beta, 1e-3, relu=relu, isa=isa)
            grads = ops.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, y=y if relu else None, isa=isa)
            out.append((y, mean, var) + tuple(grads))
        for t, o in zip((2, 3, 4, 8), out[1:]):
            for name, a, b in zip(("y", "mean", "var", "dx", "dgamma", "dbeta"), o, out[0]):
                assert np.array_equal(a, b), f"{shape}: {name} on {t} threads differs from 1"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (4, 2, 2, 64), (8, 33)], ids=str)
def test_batch_norm_with_fused_relu_matches_reference(rng, shape, isa, threads):
    """relu=True: y = max(bn(x), 0), and the backward goes through the ReLU (mask y > 0) and the
    batch statistics in the same two passes."""
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    c = shape[-1]
    gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    y, mean, var = ops.batch_norm(x, gamma, beta, 1e-3, relu=True, isa=isa)
    y_lin, m_ref, v_ref = ref.batch_norm(x.astype(np.float64), gamma, beta, 1e-3)
    ref.assert_close(y, np.maximum(y_lin, 0), 1e-5, "y")
    assert 0.2 < np.mean(y == 0) < 0.8
    dy = rng.standard_normal(shape).astype(np.float32)
    dx, dg, db = ops.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, y=y, isa=isa)
    dz = dy.astype(np.float64) * (y_lin > 0)
    dx_ref, dg_ref, db_ref = ref.batch_norm_backward(dz, x.astype(np.float64), gamma, 1e-3)
    ref.assert_close(dg, dg_ref, 1e-5, "dgamma")
    ref.assert_close(db, db_ref, 1e-5, "dbeta")
    ref.assert_close(dx, dx_ref, 1e-4, "dx")


@pytest.mark.parametrize("isa, dtype", [(i, np.float32) for i in ISAS] + [(None, np.float64)])
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (4, 2, 2, 64), (8, 33), (3, 17)], ids=str)
def test_batch_norm_relu_sign_from_x_is_the_outputs(rng, shape, isa, dtype, threads):
    """A network that has not kept the ReLU'd output recomputes its sign from x with the
    forward's scale and shift: the same gradients, bit for bit, as masking with y, including a
    channel whose gamma and beta are 0 (every output exactly 0), a channel of exact zeros, and
    then NaN in dy (the mask is a multiply, as ReLU's backward: NaN goes through in both)."""
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    c = shape[-1]
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    gamma[0] = beta[0] = 0
    if c > 1:
        x[..., 1] = 0
    y, mean, var = ops.batch_norm(x, gamma, beta, 1e-3, relu=True, isa=isa)
    for nan in (False, True):
        dy = rng.standard_normal(shape).astype(dtype)
        if nan:
            dy.reshape(-1)[::7] = np.nan
        for batch_stats in (True, False):
            from_y = ops.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, batch_stats, y=y, isa=isa)
            from_x = ops.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, batch_stats, beta=beta, relu=True,
                                             isa=isa)
            for name, a, b in zip(("dx", "dgamma", "dbeta"), from_x, from_y):
                np.testing.assert_array_equal(a, b, err_msg=name)
            assert np.isnan(from_x[0]).any() == nan
            # the ReLU is applied: without it the gradient differs
            plain = ops.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, batch_stats, isa=isa)
            assert nan or not np.array_equal(plain[0], from_x[0])


def test_batch_norm_stats_of_a_channel_far_from_zero(rng):
    """The one-pass statistics (sums of x - x[0]) keep a small spread on a large offset."""
    x = (1e4 + rng.standard_normal((64, 4, 4, 3)) * 1e-2).astype(np.float32)
    _, mean, var = ops.batch_norm(x, isa="baseline")
    _, m_ref, v_ref = ref.batch_norm(x.astype(np.float64))
    ref.assert_close(mean, m_ref, 1e-7, "mean")
    ref.assert_close(var, v_ref, 1e-5, "var")


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (6, 3)], ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_gradients_match_finite_differences(rng, shape, affine):
    """float64: the gradient includes the batch statistics' dependence on every input."""
    x = rng.standard_normal(shape)
    c = shape[-1]
    gamma = rng.standard_normal(c) if affine else None
    beta = rng.standard_normal(c) if affine else None
    dy = rng.standard_normal(shape)

    def f():
        return float((ops.batch_norm(x, gamma, beta, 1e-3)[0] * dy).sum())

    _, mean, var = ops.batch_norm(x, gamma, beta, 1e-3)
    dx, dg, db = ops.batch_norm_backward(dy, x, mean, var, gamma, 1e-3)
    assert ref.rel_error(dx, ref.numerical_grad(f, x)) < 1e-7
    if affine:
        assert ref.rel_error(dg, ref.numerical_grad(f, gamma)) < 1e-7
        assert ref.rel_error(db, ref.numerical_grad(f, beta)) < 1e-7


def test_batch_norm_backward_with_fixed_statistics(rng):
    """Inference mode (moving statistics are constants): dx = dy * gamma / sqrt(var + eps)."""
    x = rng.standard_normal((4, 3, 3, 5))
    dy = rng.standard_normal(x.shape)
    mean, var, gamma = rng.standard_normal(5), rng.random(5) + 0.5, rng.standard_normal(5)
    dx, dg, db = ops.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, batch_stats=False)
    inv = 1 / np.sqrt(var + 1e-3)
    ref.assert_close(dx, dy * gamma * inv, 1e-12)
    ref.assert_close(dg, (dy * (x - mean) * inv).sum(axis=(0, 1, 2)), 1e-12)
    ref.assert_close(db, dy.sum(axis=(0, 1, 2)), 1e-12)


def test_batch_norm_constant_channel_is_finite():
    """A channel with zero variance normalises to beta, not NaN (epsilon keeps the division finite)."""
    x = np.ones((4, 2, 2, 3), dtype=np.float32)
    y, _, var = ops.batch_norm(x, None, np.array([0.5, 0, -1], np.float32))
    assert np.all(var == 0)
    assert np.allclose(y[..., 0], 0.5) and np.allclose(y[..., 2], -1)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(0, 3), (0, 4, 4, 2), (2, 0, 5, 3)], ids=str)
def test_batch_norm_of_an_empty_batch(shape, isa):
    """Found by the sanitizer run of the property tests: the one-pass statistics shift every row by
    the first one, which an empty batch does not have (a read past the array). Statistics 0, an
    empty output, and an empty gradient with zero dgamma/dbeta."""
    x = np.zeros(shape, np.float32)
    y, mean, var = ops.batch_norm(x, np.ones(shape[-1], np.float32), None, relu=True, isa=isa)
    assert y.shape == shape and np.array_equal(mean, np.zeros(shape[-1])) and np.array_equal(var, np.zeros(shape[-1]))
    dx, dg, db = ops.batch_norm_backward(x, x, mean, var, np.ones(shape[-1], np.float32), isa=isa)
    assert dx.shape == shape and not dg.any() and not db.any()
