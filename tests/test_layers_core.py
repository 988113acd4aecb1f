"""PReLU, SpatialDropout2D and GaussianNoise: forward against numpy, gradients against finite
differences (training-mode masks and noise are fixed for a step, so they differentiate like the
step's own function), statistics of the masks and the noise, and inference as the identity."""

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L


def _model(layer, shape):
    i = L.Input(shape)
    return cnnbp.Model(i, layer(i), dtype="float64")


@pytest.mark.parametrize("shared,shape", [(None, (4, 5, 3)), ([1, 2], (4, 5, 3)), ([2], (4, 5, 3)), (None, (7,)),
                                          ([1], (6, 2))])
def test_prelu(rng, shared, shape):
    layer = L.PReLU(shared_axes=shared)
    m = _model(layer, shape)
    (alpha,) = layer.get_weights()
    expect_shape = tuple(1 if shared and (a + 1) in shared else d for a, d in enumerate(shape))
    assert alpha.shape == expect_shape and not np.any(alpha)          # Keras's default: zeros
    alpha = rng.uniform(0.05, 0.5, alpha.shape)
    layer.set_weights([alpha])
    x = rng.standard_normal((3,) + shape)
    x[np.abs(x) < 1e-3] = 0.3                                           # away from the kink
    y = m.predict(x, verbose=0)
    assert np.allclose(y, np.where(x > 0, x, alpha * x), atol=1e-12)
    assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok


def test_prelu_equals_pytorch(rng):
    torch = pytest.importorskip("torch")
    layer = L.PReLU(shared_axes=[1, 2])
    m = _model(layer, (4, 5, 3))
    layer.set_weights([np.array([[[0.1, 0.2, 0.3]]])])
    x = rng.standard_normal((2, 4, 5, 3))
    t = torch.nn.functional.prelu(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.tensor([0.1, 0.2, 0.3],
                                                                                       dtype=torch.float64))
    assert np.allclose(m.predict(x, verbose=0), t.numpy().transpose(0, 2, 3, 1), atol=1e-12)


def test_prelu_arguments():
    with pytest.raises(ValueError, match=r"shared_axes must be in 1\.\.3"):
        _model(L.PReLU(shared_axes=[4]), (4, 5, 3))


def test_spatial_dropout_drops_whole_channels(rng):
    m = _model(L.SpatialDropout2D(0.4, seed=3), (6, 5, 8))
    net = m.network
    x = np.ones((200, 6, 5, 8))
    y = net.forward(x, training=True)
    per_channel = y.reshape(200, 30, 8)
    assert np.all(per_channel.min(axis=1) == per_channel.max(axis=1))   # a channel is kept or dropped whole
    kept = per_channel[:, 0, :] != 0
    assert abs(kept.mean() - 0.6) < 0.03 and np.allclose(per_channel[:, 0, :][kept], 1 / 0.6)
    assert np.array_equal(m.predict(x, verbose=0), x)                    # inference: identity
    xs = rng.standard_normal((3, 6, 5, 8))
    assert cnnbp.gradcheck(m, xs, rng.standard_normal(xs.shape), loss="mse", print_fn=None).ok


def test_gaussian_noise(rng):
    m = _model(L.GaussianNoise(0.5, seed=1), (50, 40))
    x = np.full((20, 50, 40), 2.0)
    noise = m.network.forward(x, training=True) - x
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.5) < 0.01
    assert np.array_equal(m.predict(x, verbose=0), x)
    xs = rng.standard_normal((2, 50, 40))
    assert cnnbp.gradcheck(m, xs, rng.standard_normal(xs.shape), loss="mse", print_fn=None, samples=3).ok
    with pytest.raises(ValueError, match="stddev"):
        L.GaussianNoise(-1)


def test_regularisation_layers_train_and_reload(tmp_path, rng):
    cnnbp.set_seed(0)
    m = cnnbp.Sequential([L.Input((8, 8, 2)), L.GaussianNoise(0.1), L.Conv2D(4, 3), L.PReLU(shared_axes=[1, 2]),
                          L.SpatialDropout2D(0.2), L.Flatten(), L.Dense(2)])
    m.compile(optimizer="adam", loss="mse")
    x, y = rng.standard_normal((32, 8, 8, 2)).astype(np.float32), rng.standard_normal((32, 2)).astype(np.float32)
    first = m.evaluate(x, y, verbose=0)
    m.fit(x, y, epochs=20, verbose=0)
    assert m.evaluate(x, y, verbose=0) < first
    m.save(tmp_path / "m.cnnbp")
    back = cnnbp.load_model(tmp_path / "m.cnnbp")
    assert np.array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
