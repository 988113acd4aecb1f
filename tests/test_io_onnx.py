"""cnnbp.io.export_onnx: every layer kind's ONNX form, checked by onnx's full checker and run in
onnxruntime against model.predict (max abs difference <= 1e-4) on random and real inputs. Both
packages are optional test dependencies (the onnx extra)."""

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


def _check(model, x, tmp_path, opset=17, tol=1e-4):
    path = cnnbp.io.export_onnx(model, str(tmp_path / f"{model.name}.onnx"), opset=opset)
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    got, want = _run(path, x), model.predict(x, verbose=0)
    assert got.shape == want.shape
    err = float(np.abs(got - want).max())
    assert err <= tol, f"{model.name}: max abs difference {err}"
    return err


def _trained(model, x, y=None, loss="mse"):
    """A few steps, so that BatchNormalization's moving statistics and every weight move."""
    model.compile(optimizer=cnnbp.optimizers.Adam(1e-2), loss=loss)
    if y is None:
        y = np.random.default_rng(1).standard_normal((len(x),) + tuple(model.output_shape[1:])).astype(np.float32)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    return model


def _images(n, shape, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


def test_convolutions_pooling_and_normalisation(tmp_path):
    cnnbp.set_seed(0)
    i = L.Input((13, 11, 4))
    a = L.Conv2D(6, 3, strides=2, padding="same", activation="gelu")(i)
    a = L.BatchNormalization(name="bn")(a)
    a = L.Conv2D(6, (2, 3), dilation_rate=(2, 1), groups=2, padding="same", activation="swish")(a)
    b = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="selu")(i)
    b = L.SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=2, activation="elu")(b)
    b = L.MaxPooling2D(3, strides=1, padding="same")(b)
    c = L.Concatenate()([a, b])
    c = L.AveragePooling2D(2, padding="same")(c)
    c = L.LayerNormalization()(c)
    d = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="softplus")(c)
    d = L.Conv2DTranspose(3, 2, strides=3, activation="hard_sigmoid")(d)  # kernel smaller than stride
    d = L.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1, activation="relu6")(d)
    d = L.AveragePooling2D(3, strides=2)(d)
    e = L.MaxPooling2D()(d)
    out = L.Dense(4, activation="softmax")(L.Concatenate()([L.GlobalAveragePooling2D()(e), L.GlobalMaxPooling2D()(d)]))
    model = cnnbp.Model(i, out, name="convs")
    x = _images(16, (13, 11, 4))
    _trained(model, x)
    assert float(np.abs(np.array(model.get_layer("bn").moving_mean)).max()) > 0  # moved
    _check(model, x, tmp_path)


@pytest.mark.parametrize("make", [lambda: L.Conv2D(3, 3, padding=((1, 2), (0, 1))),
                                  lambda: L.DepthwiseConv2D(3, padding=((2, 0), (1, 1)), depth_multiplier=2)],
                         ids=["conv2d", "depthwise"])
def test_explicit_asymmetric_padding(make, tmp_path):
    cnnbp.set_seed(4)
    model = cnnbp.Sequential([L.Input((7, 6, 2)), make()], name="pads")
    model.compile(loss="mse")
    _check(model, _images(3, (7, 6, 2)), tmp_path)


def test_merges_activations_and_reshaping(tmp_path):
    cnnbp.set_seed(1)
    i = L.Input((8, 8, 3))
    x0 = L.Rescaling(0.5, offset=0.1)(i)
    norm = L.Normalization()
    norm.adapt(_images(32, (8, 8, 3), seed=5) * 3 + 1)
    x0 = norm(x0)
    a = L.Conv2D(4, 3, padding="same")(x0)
    b = L.Conv2D(4, 1)(x0)
    m = [L.Add()([a, b]), L.Subtract()([a, b]), L.Multiply()([a, b]), L.Average()([a, b]), L.Maximum()([a, b])]
    acts = [L.ReLU(max_value=1.5), L.LeakyReLU(0.1), L.ELU(0.7), L.Activation("tanh"), L.PReLU(shared_axes=[1, 2])]
    branches = [act(t) for act, t in zip(acts, m)]
    y = L.Concatenate()(branches)
    y = L.Dropout(0.3)(y)
    y = L.SpatialDropout2D(0.2)(y)
    y = L.GaussianNoise(0.1)(y)
    y = L.Identity()(y)
    y = L.ZeroPadding2D(((1, 2), (0, 1)))(y)
    y = L.Cropping2D(((2, 0), (1, 1)))(y)
    y = L.UpSampling2D(2)(y)
    y = L.UpSampling2D((1, 2), interpolation="bilinear")(y)
    y = L.Conv2D(2, 3, strides=3, activation="sigmoid")(y)
    y = L.Permute((2, 1, 3))(y)
    y = L.Reshape((-1, 4))(y)
    y = L.Softmax()(y)
    y = L.Flatten()(y)
    y = L.RepeatVector(2)(L.Dense(3)(y))
    out = L.Flatten()(y)
    model = cnnbp.Model(i, out, name="merges")
    x = _images(16, (8, 8, 3))
    _trained(model, x)
    _check(model, x, tmp_path)
    _check(model, x, tmp_path, opset=18)


def test_augmentation_is_the_identity_or_the_central_crop(tmp_path):
    cnnbp.set_seed(2)
    model = cnnbp.Sequential([
        L.Input((12, 12, 2)), L.RandomFlip(), L.RandomTranslation(0.1, 0.1), L.RandomRotation(0.1),
        L.RandomZoom(0.1), L.RandomContrast(0.2, value_range=(-3, 3)), L.RandomBrightness(0.1, value_range=(-3, 3)),
        L.RandomErasing(), L.RandomCrop(10, 9, padding=2), L.Conv2D(3, 3), L.Flatten(), L.Dense(2)], name="augment")
    x = _images(8, (12, 12, 2))
    _trained(model, x)
    _check(model, x, tmp_path)


def test_sequences(tmp_path):
    cnnbp.set_seed(3)
    model = cnnbp.Sequential([
        L.Input((20, 3)), L.Conv1D(5, 3, padding="causal", activation="relu"), L.Conv1D(4, 3, strides=2, padding="same"),
        L.MaxPooling1D(2, padding="same"), L.Conv1D(4, 2, dilation_rate=2), L.AveragePooling1D(2),
        L.GlobalMaxPooling1D(), L.Dense(2)], name="seq")
    x = np.random.default_rng(0).standard_normal((8, 20, 3)).astype(np.float32)
    _trained(model, x)
    _check(model, x, tmp_path)
    gap = cnnbp.Sequential([L.Input((6, 3)), L.GlobalAveragePooling1D()], name="gap1d")
    gap.compile(loss="mse")
    _check(gap, x[:, :6], tmp_path)


@pytest.mark.parametrize("name", ["seed", "lenet", "vgg", "resnet20", "small_resnet", "mobilenet"])
def test_preset_models_on_real_images(name, tmp_path):
    """Each preset model, briefly trained on the bundled Fashion-MNIST images (padded to 32x32 and
    repeated to 3 channels where the model wants them), gives onnxruntime's outputs to 1e-4 on
    held-out images and on a batch size it was not exported with."""
    (x, y), (xt, _) = cnnbp.datasets.load_fashion_mnist(subset=True)
    shape = {"vgg": (32, 32, 1), "mobilenet": (32, 32, 3)}.get(name, (28, 28, 1))
    def prep(a):
        a = a[..., None].astype(np.float32) / 255
        if shape[0] == 32:
            a = np.pad(a, ((0, 0), (2, 2), (2, 2), (0, 0)))
        return np.repeat(a, shape[2], axis=-1)
    cnnbp.set_seed(0)
    model = cnnbp.applications.MODELS[name](shape, 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(prep(x[:256]), y[:256], epochs=1, batch_size=32, verbose=0)
    _check(model, prep(xt[:37]), tmp_path)


def test_export_arguments(tmp_path):
    model = cnnbp.Sequential([L.Input((4,)), L.Dense(2)])
    model.compile(loss="mse")
    for bad in (16, 22, "17", True):
        with pytest.raises(ValueError, match=r"opset must be an int in \[17, 21\]"):
            cnnbp.io.export_onnx(model, str(tmp_path / "m.onnx"), opset=bad)
    first = cnnbp.Sequential([L.Input((3, 6, 6)), L.Conv2D(2, 3, data_format="channels_first")])
    first.compile(loss="mse")
    with pytest.raises(NotImplementedError, match="data_format='channels_first'"):
        cnnbp.io.export_onnx(first, str(tmp_path / "f.onnx"))


def test_command_line_export(tmp_path):
    from cnnbp.cli import main
    cnnbp.set_seed(0)
    model = cnnbp.applications.MODELS["lenet"]((28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(str(tmp_path / "m.cnnbp"))
    assert main(["export", str(tmp_path / "m.cnnbp"), "--onnx", str(tmp_path / "m.onnx")]) == 0
    x = _images(4, (28, 28, 1))
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), model.predict(x, verbose=0), atol=1e-5)
    assert main(["export", str(tmp_path / "m.cnnbp"), "--onnx", str(tmp_path / "n.onnx"), "--opset", "9"]) == 1
