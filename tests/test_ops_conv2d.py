"""conv2d forward / backward-data / backward-weight against the numpy reference on every ISA
path and thread count, and against finite differences in float64."""

import numpy as np
import pytest

from cnnbp import ops

import reference as ref
from conftest import ISAS

# (N, H, W, C, K, kernel, strides, padding, dilation)
GRID = [
    (2, 8, 8, 3, 32, (3, 3), (1, 1), "valid", (1, 1)),
    (2, 9, 7, 5, 17, (3, 3), (1, 1), "same", (1, 1)),
    (3, 10, 11, 1, 6, (5, 5), (1, 1), 2, (1, 1)),
    (2, 12, 12, 6, 16, (5, 5), (1, 1), "valid", (1, 1)),
    (2, 9, 9, 16, 33, (3, 3), (2, 2), "same", (1, 1)),
    (2, 8, 10, 8, 8, (3, 3), (2, 2), "valid", (1, 1)),
    (1, 7, 7, 4, 5, (1, 1), (1, 1), "valid", (1, 1)),
    (2, 6, 6, 32, 64, (1, 1), (2, 2), "same", (1, 1)),
    (2, 11, 9, 3, 7, (3, 3), (1, 1), "same", (2, 2)),
    (1, 12, 12, 2, 3, (3, 2), (1, 1), "valid", (2, 3)),
    (2, 7, 8, 3, 4, (4, 4), (3, 2), "same", (1, 1)),
    (2, 5, 6, 2, 3, (3, 3), (1, 1), ((1, 2), (0, 3)), (1, 1)),
    (1, 4, 4, 1, 1, (4, 4), (1, 1), "valid", (1, 1)),
    # data gradient by columns (fewer input channels than a vector: LeNet's 6 -> 16, 5x5), on both
    # widths: the 12x12x6 row above, and these with strides and dilations
    (2, 14, 13, 6, 16, (5, 5), (1, 1), "valid", (1, 1)),
    (2, 13, 12, 2, 24, (3, 3), (2, 1), "same", (2, 1)),
    (1, 10, 11, 5, 32, (5, 3), (1, 2), ((2, 1), (0, 2)), (1, 2)),
    # weight gradient vectorised over pixels (one input channel, 3 or 5 taps wide, unit width
    # stride): the 10x11 and 9x30 rows above, and row strides and dilations, a filter count past
    # the chunk, asymmetric padding
    (2, 13, 12, 1, 20, (3, 3), (2, 1), ((2, 1), (1, 0)), (2, 1)),
    (3, 17, 9, 1, 7, (5, 5), (1, 1), "same", (1, 1)),
    # first-layer shapes on the fully unrolled tiles (3x3x3, 5x5x1): strides, row dilation, both widths
    (2, 13, 11, 3, 20, (3, 3), (2, 2), "same", (1, 1)),
    (1, 9, 10, 3, 9, (3, 3), (1, 1), "valid", (2, 1)),
    (2, 12, 13, 1, 40, (5, 5), (2, 1), "same", (1, 1)),
    (1, 9, 30, 1, 3, (5, 5), (1, 1), "valid", (1, 1)),
    # strided data gradient by phases: 'same' with the odd pad after (32 -> 16 in ResNet), strides
    # above the kernel (phases no tap reaches), 2x2 stride 2, padding beyond the kernel's reach
    (2, 8, 8, 5, 7, (3, 3), (2, 2), "same", (1, 1)),
    (2, 10, 9, 4, 6, (1, 1), (3, 3), "valid", (1, 1)),
    (2, 8, 9, 3, 18, (2, 2), (2, 2), "valid", (1, 1)),
    (1, 6, 7, 2, 3, (2, 2), (1, 2), ((3, 0), (0, 3)), (1, 1)),
    # strides past 16 phases: the gather kernel in every path
    (1, 11, 12, 3, 4, (3, 3), (5, 4), "same", (1, 1)),
]
IDS = [f"{g[1]}x{g[2]}x{g[3]}-k{g[4]}-{g[5][0]}x{g[5][1]}-s{g[6][0]}{g[6][1]}-{g[7]}-d{g[8][0]}{g[8][1]}" for g in GRID]


def _make(rng, g, dtype):
    N, H, W, C, K, ks, st, pad, dil = g
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    w = rng.standard_normal(ks + (C, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("g", GRID, ids=IDS)
def test_conv2d_matches_reference_float32(rng, g, isa, threads):
    N, H, W, C, K, ks, st, pad, dil = g
    x, w, b = _make(rng, g, np.float32)
    y = ops.conv2d(x, w, b, strides=st, padding=pad, dilation_rate=dil, isa=isa)
    y_ref = ref.conv2d(x, w, b, st, pad, dil)
    ref.assert_close(y, y_ref, 1e-5, "forward")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(dy, x, w, st, pad, dil)
    dx = ops.conv2d_backward_data(dy, w, (H, W), strides=st, padding=pad, dilation_rate=dil, isa=isa)
    ref.assert_close(dx, dx_ref, 1e-5, "backward data")
    base = rng.standard_normal(dx.shape).astype(np.float32)  # the accumulate mode adds into it
    acc = ops.conv2d_backward_data(dy, w, (H, W), strides=st, padding=pad, dilation_rate=dil, add_to=base, isa=isa)
    ref.assert_close(acc, base + dx_ref, 1e-5, "backward data, accumulate")
    dw = ops.conv2d_backward_weight(dy, x, ks, strides=st, padding=pad, dilation_rate=dil, isa=isa)
    ref.assert_close(dw, dw_ref, 1e-5, "backward weight")
    ref.assert_close(ops.conv2d_backward_bias(dy), db_ref, 1e-5, "backward bias")


@pytest.mark.parametrize("g", GRID, ids=IDS)
def test_conv2d_float64_reference_path(rng, g):
    N, H, W, C, K, ks, st, pad, dil = g
    x, w, b = _make(rng, g, np.float64)
    y = ops.conv2d(x, w, b, strides=st, padding=pad, dilation_rate=dil)
    assert y.dtype == np.float64
    ref.assert_close(y, ref.conv2d(x, w, b, st, pad, dil), 1e-12, "forward f64")
    dy = rng.standard_normal(y.shape)
    dx_ref, dw_ref, _ = ref.conv2d_backward(dy, x, w, st, pad, dil)
    ref.assert_close(ops.conv2d_backward_data(dy, w, (H, W), st, pad, dil), dx_ref, 1e-12, "dx f64")
    ref.assert_close(ops.conv2d_backward_weight(dy, x, ks, st, pad, dil), dw_ref, 1e-12, "dw f64")


@pytest.mark.parametrize("g", [GRID[1], GRID[4], GRID[8], GRID[11]], ids=[IDS[1], IDS[4], IDS[8], IDS[11]])
def test_conv2d_gradients_finite_differences(rng, g):
    N, H, W, C, K, ks, st, pad, dil = g
    x, w, b = _make(rng, (1,) + g[1:], np.float64)
    y = ops.conv2d(x, w, b, st, pad, dil)
    G = rng.standard_normal(y.shape)

    def f():
        return float(np.sum(ops.conv2d(x, w, b, st, pad, dil) * G))

    dx = ops.conv2d_backward_data(G, w, (H, W), st, pad, dil)
    dw = ops.conv2d_backward_weight(G, x, ks, st, pad, dil)
    db = ops.conv2d_backward_bias(G)
    assert ref.rel_error(dx, ref.numerical_grad(f, x)) < 1e-6
    assert ref.rel_error(dw, ref.numerical_grad(f, w)) < 1e-6
    assert ref.rel_error(db, ref.numerical_grad(f, b)) < 1e-6


def test_conv2d_without_bias_and_bias_grad_from_weight_kernel(rng):
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    ref.assert_close(ops.conv2d(x, w), ref.conv2d(x, w), 1e-5)
    dy = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    dw, db = ops._o.conv2d_backward_weight_f32(dy, x, (3, 3), (1, 1), (1, 1), 0, (0, 0, 0, 0), True)
    ref.assert_close(db, dy.sum(axis=(0, 1, 2)), 1e-5)


def test_conv2d_isa_paths_agree(rng):
    x = rng.standard_normal((4, 16, 16, 32)).astype(np.float32)
    w = rng.standard_normal((3, 3, 32, 64)).astype(np.float32)
    outs = [ops.conv2d(x, w, padding="same", isa=i) for i in ISAS]
    for o in outs[1:]:
        ref.assert_close(o, outs[0], 1e-5)


@pytest.mark.parametrize("isa, dtype", [(i, np.float32) for i in ISAS] + [(None, np.float64)])
def test_conv2d_weight_grad_is_the_same_on_every_thread_count(rng, isa, dtype):
    """Images are summed in fixed blocks (not one range per thread): 1, 2, 3, 4 and 8 threads give
    the same bits, for batches below, at and above the block count, padded or not. The sum is
    still the reference one."""
    import cnnbp
    for n, pad in [(1, "same"), (5, "valid"), (16, "same"), (37, "same"), (37, "valid")]:
        x = rng.standard_normal((n, 9, 10, 5)).astype(dtype)
        dy_shape = (n, 9, 10, 7) if pad == "same" else (n, 7, 8, 7)
        dy = rng.standard_normal(dy_shape).astype(dtype)
        out = []
        for t in (1, 2, 3, 4, 8):
            cnnbp.set_num_threads(t)
            out.append(ops.conv2d_backward_weight(dy, x, 3, padding=pad, isa=isa))
        for t, o in zip((2, 3, 4, 8), out[1:]):
            assert np.array_equal(o, out[0]), f"N={n} {pad}: {t} threads differ from 1"
        w = np.zeros((3, 3, 5, 7))
        _, dw_ref, _ = ref.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w, padding=pad)
        ref.assert_close(out[0], dw_ref, 1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("g", [GRID[0], GRID[2], GRID[4], GRID[11]], ids=[IDS[0], IDS[2], IDS[4], IDS[11]])
def test_conv2d_fused_relu_epilogue(rng, g, isa):
    N, H, W, C, K, ks, st, pad, dil = g
    x, w, b = _make(rng, g, np.float32)
    x[0, 0, 0, 0] = np.nan  # NaN propagates through the fused ReLU
    y = ops.conv2d(x, w, b, strides=st, padding=pad, dilation_rate=dil, relu=True, isa=isa)
    y_plain = ops.conv2d(x, w, b, strides=st, padding=pad, dilation_rate=dil, isa=isa)
    assert np.array_equal(np.isnan(y), np.isnan(y_plain)) and np.isnan(y).any()
    ok = ~np.isnan(y)
    assert np.array_equal(y[ok], np.maximum(y_plain, 0)[ok])


@pytest.mark.parametrize("isa", ISAS)
def test_conv2d_stride_beyond_the_image(rng, isa):
    """Found by fuzzing (tests/fuzz/fuzz_build.py): strides of 65537 with 'same' padding planned
    65537**2 backward-data phases, i.e. never returned. One output pixel; every pass as the
    reference."""
    x = rng.standard_normal((2, 5, 5, 5)).astype(np.float32)
    w = rng.standard_normal((7, 8, 5, 3)).astype(np.float32)
    y = ops.conv2d(x, w, None, strides=65537, padding="same", isa=isa)
    ref.assert_close(y, ref.conv2d(x, w, None, (65537, 65537), "same"), 1e-5, "forward")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx_ref, dw_ref, _ = ref.conv2d_backward(dy, x, w, (65537, 65537), "same")
    ref.assert_close(ops.conv2d_backward_data(dy, w, (5, 5), strides=65537, padding="same", isa=isa), dx_ref, 1e-5)
    ref.assert_close(ops.conv2d_backward_weight(dy, x, (7, 8), strides=65537, padding="same", isa=isa), dw_ref, 1e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_conv2d_padding_far_larger_than_the_image(rng, isa):
    """Found by fuzzing (tests/fuzz/fuzz_plan.cpp): a dilation of 2**24 with 'same'-sized padding
    (25 million rows each side) on a 4x4 image is valid; the blocked kernels materialised the
    padded image and the phase-padded dy (gigabytes, seconds per call). Every pass equals the
    reference, which gathers taps without padding."""
    x = rng.standard_normal((3, 4, 4, 4)).astype(np.float32)
    w = rng.standard_normal((4, 4, 4, 4)).astype(np.float32)
    kw = dict(strides=(1, 5), dilation_rate=(2**24, 1), padding=((25165824, 25165824), (0, 0)))
    y = ops.conv2d(x, w, None, isa=isa, **kw)
    args = ((1, 5), ((25165824, 25165824), (0, 0)), (2**24, 1))
    ref.assert_close(y, ref.conv2d(x, w, None, *args), 1e-5, "forward")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx_ref, dw_ref, _ = ref.conv2d_backward(dy, x, w, *args)
    ref.assert_close(ops.conv2d_backward_data(dy, w, (4, 4), isa=isa, **kw), dx_ref, 1e-5, "dx")
    ref.assert_close(ops.conv2d_backward_weight(dy, x, (4, 4), isa=isa, **kw), dw_ref, 1e-5, "dw")
