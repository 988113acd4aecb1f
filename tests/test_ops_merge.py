"""Merge, concatenation, zero-padding/cropping and global max pooling kernels against numpy."""

import numpy as np
import pytest

from cnnbp import ops

import reference as ref
from conftest import ISAS

OPS = ["add", "subtract", "multiply", "average", "maximum"]
SHAPES = [(2, 5, 7, 3), (1, 1, 1, 1), (3, 4, 4, 33), (70001,)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("op,k", [(op, k) for op in OPS for k in (2, 3) if op != "subtract" or k == 2])
def test_merge_matches_reference(rng, op, k, shape, isa, threads):
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(k)]
    if op == "maximum":
        xs[1].reshape(-1)[::3] = xs[0].reshape(-1)[::3]  # ties: the first input gets the gradient
    y = ops.merge(xs, op, isa=isa)
    ref.assert_close(y, ref.merge(np.array(xs, dtype=np.float64), op), 1e-6)
    dy = rng.standard_normal(shape).astype(np.float32)
    total = np.zeros(shape)
    for j in range(k):
        dx = ops.merge_backward(dy, xs, op, j, isa=isa)
        ref.assert_close(dx, ref.merge_backward(dy.astype(np.float64), np.array(xs, dtype=np.float64), op, j), 1e-6)
        total += dx
    if op == "maximum":  # the gradient is routed, never duplicated
        ref.assert_close(total, dy, 1e-7)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "average"])
def test_merge_with_fused_relu_matches_reference(rng, op, isa, threads):
    """relu=True: max(merge, 0) in the same pass; the backward counts dy only where y > 0."""
    k = 2 if op == "subtract" else 3
    shape = (3, 5, 7, 9)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(k)]
    pre = ref.merge(np.array(xs, dtype=np.float64), op)
    ref.assert_close(ops.merge(xs, op, relu=True, isa=isa), np.maximum(pre, 0), 1e-6)
    dy = rng.standard_normal(shape).astype(np.float32)
    for j in range(k):
        want = ref.merge_backward(dy * (pre > 0), np.array(xs, dtype=np.float64), op, j)
        ref.assert_close(ops.merge_backward(dy, xs, op, j, relu=True, isa=isa), want, 1e-6)
    with pytest.raises(ValueError, match="maximum"):
        ops.merge(xs, "maximum", relu=True)


@pytest.mark.parametrize("op", OPS)
def test_merge_gradients_match_finite_differences(rng, op):
    k = 2 if op == "subtract" else 3
    xs = [rng.standard_normal((2, 3, 4)) for _ in range(k)]
    dy = rng.standard_normal((2, 3, 4))
    for j in range(k):
        num = ref.numerical_grad(lambda: float((ops.merge(xs, op) * dy).sum()), xs[j])
        assert ref.rel_error(ops.merge_backward(dy, xs, op, j), num) < 1e-8


def test_maximum_propagates_nan():
    a = np.array([1.0, np.nan, 3.0], np.float32)
    b = np.array([np.nan, 2.0, 1.0], np.float32)
    y = ops.merge([a, b], "maximum")
    assert np.isnan(y[0]) and np.isnan(y[1]) and y[2] == 3


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("channels", [(1, 2), (3, 16, 5), (32, 32)], ids=str)
def test_concatenate_matches_numpy(rng, channels, isa, threads):
    xs = [rng.standard_normal((2, 5, 3, c)).astype(np.float32) for c in channels]
    y = ops.concatenate(xs, isa=isa)
    assert np.array_equal(y, np.concatenate(xs, axis=-1))
    off = 0
    for x in xs:
        assert np.array_equal(ops.concatenate_backward(y, off, x.shape[-1], isa=isa), x)
        off += x.shape[-1]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (0, 2, 3, 0), (2, 0, 0, 1)], ids=str)
def test_zero_pad_and_crop_match_numpy(rng, pads, isa, threads):
    x = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    p = ops.zero_pad2d(x, pads, isa=isa)
    assert np.array_equal(p, ref.zero_pad2d(x, pads))
    assert np.array_equal(ops.crop2d(p, pads, isa=isa), x)  # cropping is padding's gradient
    assert np.array_equal(ops.crop2d(x, pads, isa=isa), ref.crop2d(x, pads))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 1, 1, 17), (3, 4, 4, 64)], ids=str)
def test_global_max_pool_matches_reference(rng, shape, isa, threads):
    x = rng.standard_normal(shape).astype(np.float32)
    y, am = ops.global_max_pool2d(x, return_argmax=True, isa=isa)
    y_ref, am_ref = ref.global_max_pool2d(x)
    assert np.array_equal(y, y_ref) and np.array_equal(am, am_ref)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert np.array_equal(ops.global_max_pool2d_backward(dy, x, isa=isa), ref.global_max_pool2d_backward(dy, x))


def test_global_max_pool_gradient_matches_finite_differences(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    dy = rng.standard_normal((2, 5))
    num = ref.numerical_grad(lambda: float((ops.global_max_pool2d(x) * dy).sum()), x)
    assert ref.rel_error(ops.global_max_pool2d_backward(dy, x), num) < 1e-8
