"""The image preprocessing layers: known answers (a flip, whole-pixel shifts under every fill mode,
a rotation by a quarter turn, crops and their offsets) against the numpy references, the
distributions of the draws, gradients against finite differences, reproducibility (seed, step,
rank, thread count), inference behaviour, saving and training."""

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L
import reference as ref


def _model(layer, shape, dtype="float64"):
    i = L.Input(shape)
    return cnnbp.Model(i, layer(i), dtype=dtype)


def _train_out(m, x):
    return m.network.forward(x, training=True)


def test_flip_each_image_is_itself_or_its_mirror(rng):
    x = rng.standard_normal((400, 5, 6, 2))
    for mode, flips in (("horizontal", [(1,)]), ("vertical", [(0,)]),
                        ("horizontal_and_vertical", [(1,), (0,), (0, 1)])):
        y = _train_out(_model(L.RandomFlip(mode, seed=1), (5, 6, 2)), x)
        counts = np.zeros(len(flips) + 1)
        for a, b in zip(x, y):
            hit = [k for k, ax in enumerate(flips) if np.array_equal(b, np.flip(a, ax))]
            if np.array_equal(a, b):
                counts[0] += 1
            else:
                assert len(hit) == 1, mode
                counts[hit[0] + 1] += 1
        expect = 400 / len(counts)
        assert np.all(np.abs(counts - expect) < 5 * np.sqrt(expect)), (mode, counts)


@pytest.mark.parametrize("fill_mode", ["constant", "reflect", "wrap", "nearest"])
def test_translation_by_whole_pixels(rng, fill_mode):
    x = rng.standard_normal((3, 8, 10, 2))
    layer = L.RandomTranslation((0.25, 0.25), (-0.2, -0.2), fill_mode=fill_mode, fill_value=0.5, seed=0)
    y = _train_out(_model(layer, (8, 10, 2)), x)
    # shifted down by 2 rows and left by 2 columns: output (i, j) reads input (i - 2, j + 2)
    for a, b in zip(x, y):
        expect = ref.warp(a, [1, 0, 2, 0, 1, -2], fill_mode=fill_mode, fill_value=0.5)
        assert np.allclose(b, expect, atol=1e-12)
    assert np.array_equal(y[0, 2:, :8], x[0, :6, 2:])


def test_translation_fractions_are_uniform(rng):
    x = np.zeros((2000, 1, 41, 1))
    x[:, 0, 20, 0] = 1.0                             # one bright pixel in the middle column
    y = _train_out(_model(L.RandomTranslation(0, 0.25, interpolation="nearest", fill_mode="constant", seed=3),
                          (1, 41, 1)), x)
    shift = y[:, 0, :, 0].argmax(axis=1) - 20        # whole pixels (nearest): within +-round(0.25 * 41)
    assert shift.min() >= -10 and shift.max() <= 10 and abs(shift.mean()) < 0.4
    assert np.histogram(shift, bins=4, range=(-10, 10))[0].min() > 400


def test_rotation_by_a_quarter_turn_is_rot90(rng):
    x = rng.standard_normal((2, 7, 7, 3))
    for interp in ("nearest", "bilinear"):
        y = _train_out(_model(L.RandomRotation((0.25, 0.25), interpolation=interp, seed=0), (7, 7, 3)), x)
        assert np.allclose(y, np.rot90(x, 1, axes=(1, 2)), atol=1e-9), interp
    # a non-square image: the interior against the reference map, the border filled as asked
    x = rng.standard_normal((2, 6, 9, 1))
    for fill in ("constant", "reflect"):
        layer = L.RandomRotation((0.1, 0.1), fill_mode=fill, seed=0)
        y = _train_out(_model(layer, (6, 9, 1)), x)
        for a, b in zip(x, y):
            assert np.allclose(b, ref.warp(a, ref.rotation_map(6, 9, 0.1), fill_mode=fill), atol=1e-12)


def test_zoom_against_the_reference(rng):
    x = rng.standard_normal((2, 9, 8, 2))
    for hf, wf, fill in (((0.5, 0.5), None, "constant"), ((-0.3, -0.3), (0.2, 0.2), "reflect"),
                         ((0.4, 0.4), (0.0, 0.0), "wrap")):
        layer = L.RandomZoom(hf, wf, fill_mode=fill, seed=0)
        y = _train_out(_model(layer, (9, 8, 2)), x)
        zx = hf[0] if wf is None else wf[0]
        for a, b in zip(x, y):
            assert np.allclose(b, ref.warp(a, ref.zoom_map(9, 8, hf[0], zx), fill_mode=fill), atol=1e-12)


def test_crop_windows_and_their_offsets(rng):
    x = rng.standard_normal((600, 6, 6, 1))
    m = _model(L.RandomCrop(4, 4, padding=2, seed=5), (6, 6, 1))
    y = _train_out(m, x)
    xp = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    offsets = []
    for a, b in zip(xp, y):
        hits = [(t, l) for t in range(7) for l in range(7) if np.array_equal(a[t:t + 4, l:l + 4], b)]
        assert hits, "every output is a window of the padded image"
        offsets.append(hits[0])
    tops = np.array([o[0] for o in offsets])
    assert set(tops) == set(range(7)) and np.bincount(tops).min() > 50      # offsets 0..H+2p-h, uniform
    assert np.array_equal(m.predict(x[:3], verbose=0), xp[:3, 3:7, 3:7])     # inference: the centre window
    same = _model(L.RandomCrop(6, 6, padding=4, seed=1), (6, 6, 1))
    assert np.array_equal(same.predict(x[:3], verbose=0), x[:3])             # pad-and-crop: identity in inference


def test_contrast_brightness_and_erasing(rng):
    x = rng.uniform(0, 1, (500, 6, 5, 2))
    y = _train_out(_model(L.RandomContrast(0.5, value_range=(-100, 100), seed=2), (6, 5, 2)), x)
    mean = x.mean(axis=(1, 2), keepdims=True)
    f = ((y - mean) / (x - mean)).reshape(500, -1)
    assert np.allclose(f, f[:, :1], atol=1e-9)                                # one factor per image
    f = f[:, 0]
    assert f.min() >= 0.5 and f.max() <= 1.5 and abs(f.mean() - 1) < 0.04 and abs(f.std() - 1 / np.sqrt(12)) < 0.02
    y = _train_out(_model(L.RandomContrast(0.9, value_range=(0, 1), seed=2), (6, 5, 2)), x)
    assert y.min() >= 0 and y.max() <= 1 and (y == 1).any()                  # clipped to value_range

    y = _train_out(_model(L.RandomBrightness(0.2, value_range=(-5, 5), seed=3), (6, 5, 2)), x)
    d = (y - x).reshape(500, -1)
    assert np.allclose(d, d[:, :1], atol=1e-12)
    assert d.min() >= -2 and d.max() <= 2 and abs(d.mean()) < 0.1 and abs(d[:, 0].std() - 4 / np.sqrt(12)) < 0.1
    y = _train_out(_model(L.RandomBrightness(0.5, value_range=(0, 1), seed=3), (6, 5, 2)), x)
    assert y.min() == 0 and y.max() == 1

    x = rng.uniform(1, 2, (2000, 10, 10, 1))
    y = _train_out(_model(L.RandomErasing(0.5, scale=(0.1, 0.3), ratio=(1, 1), fill_value=0, seed=4), (10, 10, 1)), x)
    erased = (y == 0).reshape(2000, -1).sum(axis=1)
    assert abs((erased > 0).mean() - 0.5) < 0.04
    sides = np.sqrt(erased[erased > 0])
    assert np.allclose(sides, np.round(sides)) and sides.min() >= 3 and sides.max() <= 6  # squares of 10..30 %
    ys, xs = np.nonzero(y[np.argmax(erased > 0), :, :, 0] == 0)
    assert (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) == erased[np.argmax(erased > 0)]  # one rectangle


RANDOM_LAYERS = [
    lambda: L.RandomFlip(seed=1), lambda: L.RandomTranslation(0.2, 0.3, seed=2),
    lambda: L.RandomRotation(0.2, fill_mode="constant", seed=3), lambda: L.RandomZoom(0.3, (-0.2, 0.1), seed=4),
    lambda: L.RandomCrop(4, 5, padding=1, seed=5), lambda: L.RandomContrast(0.4, seed=6),
    lambda: L.RandomBrightness(0.3, value_range=(-3, 3), seed=7), lambda: L.RandomErasing(seed=8),
]


@pytest.mark.parametrize("make", RANDOM_LAYERS, ids=lambda f: type(f()).__name__)
def test_random_layer_gradients_and_inference(rng, make):
    x = rng.uniform(-1, 1, (3, 6, 7, 2))
    layer = make()
    m = _model(layer, (6, 7, 2))
    y = _train_out(m, x)
    assert not np.array_equal(y[:, :6, :7] if y.shape == x.shape else y, x if y.shape == x.shape else y * 0)
    r = cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None, samples=4)
    assert r.ok, r
    if not isinstance(layer, L.RandomCrop):
        assert np.array_equal(m.predict(x, verbose=0), x)                    # inference: identity


@pytest.mark.parametrize("make", RANDOM_LAYERS, ids=lambda f: type(f()).__name__)
def test_random_layer_draws_depend_on_seed_step_and_rank_only(rng, make):
    x = rng.uniform(-1, 1, (16, 6, 7, 2)).astype(np.float32)
    outs = {}
    for threads in (1, 2):
        cnnbp.set_num_threads(threads)
        m = _model(make(), (6, 7, 2), dtype="float32")
        net = m.network
        a = _train_out(m, x)
        outs[threads] = a
        assert np.array_equal(_train_out(m, x), a)                           # same step: same draws
        net.iterations = 5
        assert not np.array_equal(_train_out(m, x), a)                       # another step: new draws
        net.iterations = 0
        net.rng_stream = 1
        assert not np.array_equal(_train_out(m, x), a)                       # another rank: new draws
    assert np.array_equal(outs[1], outs[2])                                  # the thread count changes nothing
    assert np.array_equal(_train_out(_model(make(), (6, 7, 2), "float32"), x), outs[1])   # the seed fixes them


def test_rescaling_and_normalization(rng, tmp_path):
    x = rng.uniform(0, 255, (4, 5, 6, 3))
    assert np.allclose(_model(L.Rescaling(1 / 255, offset=-0.5), (5, 6, 3)).predict(x, verbose=0), x / 255 - 0.5)
    data = rng.normal([1.0, -2.0, 3.0], [2.0, 0.5, 1e-9], (1000, 3))
    norm = L.Normalization()
    norm.adapt(data)                                                         # before the model is built
    m = _model(norm, (3,))
    assert np.allclose(norm.mean, data.mean(0)) and np.allclose(norm.variance, data.var(0))
    y = m.predict(data, verbose=0)
    assert np.allclose(y, (data - data.mean(0)) / np.maximum(data.std(0), 1e-7))
    assert len(m.non_trainable_weights) == 2 and not m.trainable_weights
    m2 = _model(L.Normalization(mean=[1, 2, 3], variance=4, invert=True), (3,))
    assert np.allclose(m2.predict(data, verbose=0), data * 2 + [1, 2, 3])
    images = rng.uniform(0, 255, (50, 4, 4, 3))
    norm2 = L.Normalization()
    m3 = _model(norm2, (4, 4, 3))
    norm2.adapt(images)                                                      # after: over every axis but the last
    assert np.allclose(norm2.mean, images.reshape(-1, 3).mean(0))
    r = cnnbp.gradcheck(m3, images[:2], rng.standard_normal((2, 4, 4, 3)), loss="mse", print_fn=None)
    assert r.ok
    m3.save(tmp_path / "n.cnnbp")
    back = cnnbp.load_model(tmp_path / "n.cnnbp")
    assert np.array_equal(back.predict(images, verbose=0), m3.predict(images, verbose=0))
    with pytest.raises(ValueError, match="both mean and variance"):
        L.Normalization(mean=1.0)
    with pytest.raises(ValueError, match="3 values"):
        _model(L.Normalization(mean=[1, 2], variance=[1, 1]), (3,))


def test_bad_arguments_name_the_layer():
    with pytest.raises(ValueError, match="flip.*mode"):
        L.RandomFlip("diagonal", name="flip")
    with pytest.raises(ValueError, match="fill_mode"):
        L.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="height_factor"):
        L.RandomTranslation(1.5, 0.1)
    with pytest.raises(ValueError, match="zoom factors must be > -1"):
        L.RandomZoom((-1.0, 0.0))
    with pytest.raises(ValueError, match="factor"):
        L.RandomContrast((1.5, 0.1))
    with pytest.raises(ValueError, match="probability"):
        L.RandomErasing(1.5)
    with pytest.raises(ValueError, match=r"crop.*does not fit the 6x6 input"):
        _model(L.RandomCrop(9, 4, name="crop"), (6, 6, 1))
    with pytest.raises(ValueError, match=r"RandomFlip.*\(height, width, channels\)|RandomFlip.*rank"):
        _model(L.RandomFlip(), (10,))


def test_augmented_training_is_reproducible_resumable_and_saved(rng, tmp_path):
    def build():
        cnnbp.set_seed(3)
        m = cnnbp.Sequential([L.Input((8, 8, 1)), L.Rescaling(1 / 255), L.RandomFlip("horizontal"),
                              L.RandomTranslation(0.1, 0.1), L.RandomRotation(0.05), L.RandomZoom(0.1),
                              L.RandomCrop(8, 8, padding=1), L.RandomContrast(0.2, value_range=(0, 1)),
                              L.RandomBrightness(0.1, value_range=(0, 1)), L.RandomErasing(0.5),
                              L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(3, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m
    x = rng.uniform(0, 255, (64, 8, 8, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 127.5).astype(np.int64) + (x[:, :4].mean(axis=(1, 2, 3)) > 140)
    a = build()
    a.fit(x, y, batch_size=16, epochs=4, verbose=0)
    b = build()
    b.fit(x, y, batch_size=16, epochs=2, verbose=0)
    b.save(tmp_path / "half.cnnbp")
    c = cnnbp.load_model(tmp_path / "half.cnnbp")
    c.fit(x, y, batch_size=16, epochs=4, initial_epoch=2, verbose=0)
    for wa, wc in zip(a.get_weights(), c.get_weights()):
        assert np.array_equal(wa, wc)                                         # resumed: the same draws
    cfg = a.get_config()
    assert [l["class_name"] for l in cfg["layers"]][1:5] == ["RandomFlip", "RandomTranslation", "RandomRotation",
                                                             "RandomZoom"]
    again = cnnbp.Sequential.from_config(cfg)
    again.set_weights(a.get_weights())
    assert np.array_equal(again.predict(x, verbose=0), a.predict(x, verbose=0))


def test_extreme_but_valid_arguments_stay_finite(rng):
    x = rng.standard_normal((2, 5, 6, 2))
    for layer in (L.RandomZoom((1e5, 1e5), fill_mode="reflect"), L.RandomZoom((1e5, 1e5), fill_mode="wrap"),
                  L.RandomZoom((-0.999, -0.999)), L.RandomCrop(4, 4, padding=2**30),
                  L.RandomTranslation((1, 1), (-1, -1), fill_mode="nearest")):
        m = _model(layer, (5, 6, 2))
        y = _train_out(m, x)
        assert np.all(np.isfinite(y)), layer
        r = cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None, samples=2)
        assert r.ok, layer
