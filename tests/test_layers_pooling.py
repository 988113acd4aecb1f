"""The 1-D pooling layers against numpy (float64), finite differences, and a 1-D convolutional
classifier on a synthetic signal task (the example's model, trained briefly)."""

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L

import reference as ref


@pytest.mark.parametrize("cls,op", [(L.MaxPooling1D, "max"), (L.AveragePooling1D, "avg")])
@pytest.mark.parametrize("size,stride,pad", [(2, None, "valid"), (3, 2, "same"), (3, 1, "valid"), (4, 3, "same")])
def test_pool1d(rng, cls, op, size, stride, pad):
    x = rng.standard_normal((2, 11, 3))
    i = L.Input(x.shape[1:])
    m = cnnbp.Model(i, cls(size, strides=stride, padding=pad)(i), dtype="float64")
    y = m.predict(x, verbose=0)
    ref.assert_close(y, ref.pool1d(x, size, stride or size, pad, op), 1e-12)
    assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok


@pytest.mark.parametrize("cls,fn", [(L.GlobalAveragePooling1D, np.mean), (L.GlobalMaxPooling1D, np.max)])
def test_global_pool1d(rng, cls, fn):
    x = rng.standard_normal((3, 7, 4))
    i = L.Input(x.shape[1:])
    m = cnnbp.Model(i, cls()(i), dtype="float64")
    y = m.predict(x, verbose=0)
    ref.assert_close(y, fn(x, axis=1), 1e-12)
    assert y.shape == (3, 4)
    assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok


def test_aliases():
    assert L.MaxPool1D is L.MaxPooling1D and L.AvgPool1D is L.AveragePooling1D
    assert L.GlobalAvgPool1D is L.GlobalAveragePooling1D and L.GlobalMaxPool1D is L.GlobalMaxPooling1D
