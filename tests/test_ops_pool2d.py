"""Max, average and global average pooling against the reference and finite differences."""

import numpy as np
import pytest

from cnnbp import ops

import reference as ref
from conftest import ISAS

# (N, H, W, C, pool, strides, padding)
GRID = [
    (2, 8, 8, 3, (2, 2), None, "valid"),
    (2, 7, 9, 17, (2, 2), None, "valid"),
    (2, 7, 9, 5, (2, 2), None, "same"),
    (3, 9, 9, 4, (3, 3), (2, 2), "valid"),
    (1, 10, 7, 33, (3, 3), (2, 2), "same"),
    (2, 6, 6, 2, (3, 2), (1, 1), "same"),
    (2, 5, 5, 1, (5, 5), None, "valid"),
    (2, 8, 6, 16, (2, 3), (3, 1), "valid"),
]
IDS = [f"{g[1]}x{g[2]}x{g[3]}-p{g[4][0]}{g[4][1]}-s{g[5]}-{g[6]}" for g in GRID]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("g", GRID, ids=IDS)
def test_max_pool_matches_reference(rng, g, isa, threads):
    N, H, W, C, pool, st, pad = g
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    y, am = ops.max_pool2d(x, pool, st, pad, return_argmax=True, isa=isa)
    y_ref, am_ref = ref.max_pool2d(x, pool, st, pad)
    assert np.array_equal(y, y_ref.astype(np.float32))
    assert np.array_equal(am, am_ref)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.max_pool2d_backward(dy, x, pool, st, pad, isa=isa)
    ref.assert_close(dx, ref.max_pool2d_backward(dy, x, pool, st, pad), 1e-6)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("g", GRID, ids=IDS)
def test_avg_pool_matches_reference(rng, g, isa, threads):
    N, H, W, C, pool, st, pad = g
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    y = ops.avg_pool2d(x, pool, st, pad, isa=isa)
    ref.assert_close(y, ref.avg_pool2d(x, pool, st, pad), 1e-6)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ref.assert_close(ops.avg_pool2d_backward(dy, x, pool, st, pad, isa=isa),
                     ref.avg_pool2d_backward(dy, x, pool, st, pad), 1e-6)


@pytest.mark.parametrize("g", GRID, ids=IDS)
def test_pool_gradients_finite_differences(rng, g):
    N, H, W, C, pool, st, pad = g
    # Distinct values far apart (no ties within h) keep max pooling differentiable.
    x = rng.permutation(N * H * W * C).reshape(N, H, W, C) * 0.01 + rng.uniform(0, 1e-3, (N, H, W, C))
    G = rng.standard_normal(ops.max_pool2d(x, pool, st, pad).shape)
    fmax = lambda: float(np.sum(ops.max_pool2d(x, pool, st, pad) * G))
    favg = lambda: float(np.sum(ops.avg_pool2d(x, pool, st, pad) * G))
    assert ref.rel_error(ops.max_pool2d_backward(G, x, pool, st, pad), ref.numerical_grad(fmax, x)) < 1e-6
    assert ref.rel_error(ops.avg_pool2d_backward(G, x, pool, st, pad), ref.numerical_grad(favg, x)) < 1e-6


@pytest.mark.parametrize("isa", ISAS)
def test_max_pool_nan_propagates_and_routes_gradient(isa):
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    x[0, 0, 1, 0] = np.nan   # window (0, 0), channel 0
    x[0, 1, 0, 0] = np.nan   # same window, later position: the first NaN wins
    x[1, 3, 3, 2] = np.nan
    y, am = ops.max_pool2d(x, 2, return_argmax=True, isa=isa)
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[1, 1, 1, 2])
    assert np.isfinite(np.delete(y.reshape(-1), [0, y[0].size + y.shape[2] * y.shape[3] + y.shape[3] + 2])).all()
    assert am[0, 0, 0, 0] == 0 * 4 + 1
    dx = ops.max_pool2d_backward(np.ones_like(y), x, 2, isa=isa)
    assert dx[0, 0, 1, 0] == 1 and dx[0, 1, 0, 0] == 0 and dx[1, 3, 3, 2] == 1


def test_max_pool_ties_take_first_position():
    x = np.zeros((1, 2, 2, 1), dtype=np.float32)
    dx = ops.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), x, 2)
    assert dx.reshape(-1).tolist() == [1, 0, 0, 0]


def test_global_avg_pool(rng):
    x = rng.standard_normal((3, 5, 7, 9))
    y = ops.global_avg_pool2d(x)
    ref.assert_close(y, ref.global_avg_pool2d(x), 1e-12)
    G = rng.standard_normal(y.shape)
    f = lambda: float(np.sum(ops.global_avg_pool2d(x) * G))
    assert ref.rel_error(ops.global_avg_pool2d_backward(G, (5, 7)), ref.numerical_grad(f, x)) < 1e-6
    for isa in ISAS:
        ref.assert_close(ops.global_avg_pool2d(x.astype(np.float32), isa=isa), y, 1e-6)


@pytest.mark.parametrize("isa, dtype", [(i, np.float32) for i in ISAS] + [("baseline", np.float64)])
@pytest.mark.parametrize("C", [1, 5, 16, 32, 33])
def test_max_pool_backward_through_relu(rng, C, dtype, isa):
    # After a convolution with activation='relu' the network asks max pooling's backward for the
    # gradient before the ReLU: it must equal the ReLU's backward applied to the pooling gradient,
    # to the bit, NaN and inf in dy included, on the one-pass (tiled) and the scatter paths.
    x = np.maximum(rng.standard_normal((2, 8, 6, C)) - 0.5, 0).astype(dtype)
    x[0, :2, :2, :] = 0  # whole windows of zeros: the arg-max is a zero, relu' there is 0
    for pool, st, pad in [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"), ((2, 3), (1, 2), "valid"),
                          ((2, 2), (1, 1), "same")]:
        y = ops.max_pool2d(x, pool, st, pad, isa=isa)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dy.flat[::7] = np.nan
        dy.flat[3::11] = np.inf
        plain = ops.max_pool2d_backward(dy, x, pool, st, pad, isa=isa)
        fused = ops.max_pool2d_backward(dy, x, pool, st, pad, relu=True, isa=isa)
        np.testing.assert_array_equal(fused, ops.activation_backward(plain, x, x, "relu", isa=isa))
        assert not np.array_equal(fused, plain)  # the mask did something


@pytest.mark.parametrize("isa, dtype", [(i, np.float32) for i in ISAS] + [("baseline", np.float64)])
@pytest.mark.parametrize("C", [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33])
def test_max_pool_channel_blocks(rng, C, dtype, isa):
    # The forward keeps one vector of channels per window in registers (16, 8 or 4 floats by path;
    # the float64 kernels are the portable path's: 2 doubles); the last block of a pixel reads
    # into the next pixel, and the tensor's last pixels take a scalar path. NaNs in every channel
    # of some pixels must reach only their own windows.
    x = rng.standard_normal((3, 7, 6, C)).astype(dtype)
    x[0, 0, 1, :] = np.nan
    x[2, 6, 5, :] = np.nan
    # The gradient: windows that tile the input (strides = window; with 'same' padding, and with
    # rows and columns no window covers) are written in one pass when C fills whole vectors.
    for pool, st, pad in [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"), ((2, 3), (1, 2), "valid"),
                          ((2, 3), (2, 3), "same"), ((3, 4), None, "valid")]:
        y, am = ops.max_pool2d(x, pool, st, pad, return_argmax=True, isa=isa)
        y_ref, am_ref = ref.max_pool2d(x, pool, st, pad)
        assert y.dtype == dtype
        np.testing.assert_array_equal(y, y_ref.astype(dtype))
        np.testing.assert_array_equal(am, am_ref)
        np.testing.assert_array_equal(ops.max_pool2d(x, pool, st, pad, isa=isa), y)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = ops.max_pool2d_backward(dy, x, pool, st, pad, isa=isa)
        ref.assert_close(dx, ref.max_pool2d_backward(dy, x, pool, st, pad), 1e-6)  # (overlaps: float sums)
