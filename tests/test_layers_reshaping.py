"""Reshape, Permute and UpSampling2D against numpy (float64 to 1e-12; every kernel path in
test_layers_paths.py), their gradients against finite differences, and their argument checks."""

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L

import reference as ref


def _model(layer, shape, dtype="float64"):
    x = L.Input(shape)
    return cnnbp.Model(x, layer(x), dtype=dtype)


@pytest.mark.parametrize("size", [(2, 2), (1, 3), (3, 2)])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling_forward_backward(rng, size, interpolation):
    x = rng.standard_normal((2, 4, 5, 3))
    m = _model(L.UpSampling2D(size, interpolation=interpolation), x.shape[1:])
    y = m.predict(x, verbose=0)
    ref.assert_close(y, ref.upsampling2d(x, size, interpolation == "bilinear"), 1e-12)
    if interpolation == "nearest":
        assert np.array_equal(y, np.repeat(np.repeat(x, size[0], 1), size[1], 2))
    res = cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None)
    assert res.ok, res


def test_bilinear_uses_half_pixel_centres():
    m = _model(L.UpSampling2D((1, 2), interpolation="bilinear"), (1, 2, 1))
    y = m.predict(np.array([0.0, 1.0]).reshape(1, 1, 2, 1), verbose=0).ravel()
    assert np.allclose(y, [0, 0.25, 0.75, 1])   # tf.image.resize's values


@pytest.mark.parametrize("target", [(20, 3), (-1,), (3, 4, 5), (6, -1, 2)])
def test_reshape(rng, target):
    x = rng.standard_normal((3, 4, 5, 3))
    m = _model(L.Reshape(target), x.shape[1:])
    y = m.predict(x, verbose=0)
    assert np.array_equal(y, x.reshape((3,) + tuple(target)))
    assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok


@pytest.mark.parametrize("dims,shape", [((2, 1), (4, 5)), ((3, 1, 2), (4, 5, 3)), ((1, 3, 2), (2, 3, 4)),
                                        ((4, 2, 3, 1), (2, 3, 2, 3))])
def test_permute(rng, dims, shape):
    x = rng.standard_normal((2,) + shape)
    m = _model(L.Permute(dims), shape)
    y = m.predict(x, verbose=0)
    assert np.array_equal(y, np.transpose(x, (0,) + dims))
    assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok


def test_a_branch_through_permute_accumulates_gradients(rng):
    """Permute back to the input's layout and add: the input's gradient is the sum of both paths."""
    x = L.Input((3, 3, 2))
    y = L.add([x, L.Permute((2, 1, 3))(x)])
    m = cnnbp.Model(x, L.Dense(2)(L.Flatten()(y)), dtype="float64")
    xs = rng.standard_normal((2, 3, 3, 2))
    assert cnnbp.gradcheck(m, xs, rng.standard_normal((2, 2)), loss="mse", print_fn=None).ok


@pytest.mark.parametrize("make,match", [
    (lambda: L.Reshape((7,)), r"cannot reshape \(None, 4, 5, 3\)"), (lambda: L.Reshape((-1, -1)), "at most one -1"),
    (lambda: L.Reshape((0, 3)), "positive sizes"), (lambda: L.Permute((1, 1, 2)), "permutation"),
    (lambda: L.Permute((2, 1)), "must list 3 axes"), (lambda: L.UpSampling2D(interpolation="bicubic"), "nearest"),
    (lambda: L.UpSampling2D(0), "size")])
def test_arguments_are_checked(make, match):
    with pytest.raises(ValueError, match=match):
        _model(make(), (4, 5, 3))


def test_upsampling_equals_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 4, 5, 3))
    for mode, interp in (("nearest", "nearest"), ("bilinear", "bilinear")):
        m = _model(L.UpSampling2D((2, 3), interpolation=interp), x.shape[1:])
        kw = {} if mode == "nearest" else {"align_corners": False}
        t = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), scale_factor=(2, 3), mode=mode,
                                            **kw)
        ref.assert_close(m.predict(x, verbose=0), t.numpy().transpose(0, 2, 3, 1), 1e-12)


def test_repeat_vector(rng):
    x = rng.standard_normal((3, 5))
    m = _model(L.RepeatVector(4), (5,))
    y = m.predict(x, verbose=0)
    assert y.shape == (3, 4, 5) and np.array_equal(y, np.repeat(x[:, None, :], 4, axis=1))
    assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok
    with pytest.raises(ValueError, match=r"expected an input of shape \(None, features\)"):
        _model(L.RepeatVector(2), (3, 4))


@pytest.mark.parametrize("batch", [1, 5])
def test_new_reshaping_layers_on_both_thread_counts(rng, threads, batch):
    x = rng.standard_normal((batch, 5, 6, 3))
    for layer, fn in ((L.UpSampling2D((2, 3), interpolation="bilinear"), lambda v: ref.upsampling2d(v, (2, 3), True)),
                      (L.UpSampling2D(2), lambda v: ref.upsampling2d(v, (2, 2))),
                      (L.Permute((2, 3, 1)), lambda v: v.transpose(0, 2, 3, 1))):
        m = _model(layer, x.shape[1:])
        y = m.predict(x, verbose=0)
        ref.assert_close(y, fn(x), 1e-12)
        assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None, samples=3).ok
