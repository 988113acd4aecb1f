"""BatchNormalization in models: batch statistics while training, moving statistics committed only
by successful steps and used in inference, frozen layers, saving, and a real-data check."""

import numpy as np
import pytest

import cnnbp
from cnnbp.layers import BatchNormalization, Conv2D, Dense, Flatten, Input

import reference as ref


def _bn_model(momentum=0.9, dtype="float64", **kw):
    x = Input((4, 4, 3))
    h = Conv2D(5, 3, padding="same")(x)
    bn = BatchNormalization(momentum=momentum, **kw)
    y = Dense(2)(Flatten()(bn(h)))
    m = cnnbp.Model(x, y, dtype=dtype)
    m.compile(optimizer=cnnbp.optimizers.SGD(0.05), loss="mse")
    return m, bn


def test_keras_defaults_and_weight_order():
    bn = BatchNormalization()
    assert (bn.axis, bn.momentum, bn.epsilon, bn.center, bn.scale) == (-1, 0.99, 1e-3, True, True)
    m = cnnbp.Sequential([Input((3, 3, 4)), bn])
    assert m.count_params() == 16  # builds the model
    names = [n for n, _ in bn._weight_views()]
    assert names == ["gamma", "beta", "moving_mean", "moving_variance"]
    g, b, mm, mv = bn.get_weights()
    assert np.all(g == 1) and np.all(b == 0) and np.all(mm == 0) and np.all(mv == 1)
    assert len(m.trainable_weights) == 2 and len(m.non_trainable_weights) == 2


def test_moving_statistics_follow_the_keras_formula():
    cnnbp.set_seed(0)
    m, bn = _bn_model(momentum=0.8)
    rng = np.random.default_rng(0)
    conv = m.layers[0]
    mm, mv = np.zeros(5), np.ones(5)
    for _ in range(4):
        x = rng.standard_normal((6, 4, 4, 3)) * 2 + 1
        h = ref.conv2d(x, np.array(conv.kernel), np.array(conv.bias), padding="same")
        _, mean, var = ref.batch_norm(h)
        m.train_on_batch(x, rng.standard_normal((6, 2)))
        mm = mm * 0.8 + mean * 0.2
        mv = mv * 0.8 + var * 0.2
        ref.assert_close(bn.moving_mean, mm, 1e-12)
        ref.assert_close(bn.moving_variance, mv, 1e-12)


def test_inference_uses_the_moving_statistics():
    cnnbp.set_seed(1)
    m, bn = _bn_model()
    rng = np.random.default_rng(1)
    for _ in range(3):
        m.train_on_batch(rng.standard_normal((8, 4, 4, 3)), rng.standard_normal((8, 2)))
    bn.set_weights([rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal(5), rng.random(5) + 0.1])
    x = rng.standard_normal((3, 4, 4, 3))
    conv, dense = m.layers[0], m.layers[3]
    h = ref.conv2d(x, np.array(conv.kernel), np.array(conv.bias), padding="same")
    g, b, mm, mv = bn.get_weights()
    expect = ref.dense(((h - mm) / np.sqrt(mv + 1e-3) * g + b).reshape(3, -1), np.array(dense.kernel),
                       np.array(dense.bias))
    ref.assert_close(m.predict(x), expect, 1e-12)


def test_nan_loss_leaves_weights_and_statistics_untouched():
    cnnbp.set_seed(2)
    m, bn = _bn_model(dtype="float32")
    rng = np.random.default_rng(2)
    m.train_on_batch(rng.standard_normal((4, 4, 4, 3)), rng.standard_normal((4, 2)))
    before = [w.copy() for w in m.get_weights()]
    with pytest.raises(cnnbp.NumericalError):
        m.fit(rng.standard_normal((4, 4, 4, 3)), np.full((4, 2), np.nan), verbose=0)
    m.network.apply_update()  # nothing measured by the failed step may be committed later either
    ref.assert_close(bn.moving_mean, before[4], 1e-7)
    ref.assert_close(bn.moving_variance, before[5], 1e-7)


def test_batch_norm_on_dense_features():
    cnnbp.set_seed(3)
    x = Input((6,))
    m = cnnbp.Model(x, Dense(2)(BatchNormalization()(Dense(4, activation="tanh")(x))), dtype="float64")
    m.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(3)
    xb, yb = rng.standard_normal((5, 6)), rng.standard_normal((5, 2))
    net = m.network
    net.forward(xb, training=True)
    net.backward(yb)
    grads = np.array(net.flat_grads())

    def f():
        net.forward(xb, training=True)
        return net.backward(yb)[0]

    assert ref.rel_error(grads, ref.numerical_grad(f, net.flat_params())) < 1e-6


def test_frozen_batch_norm_runs_in_inference_mode_and_does_not_move():
    cnnbp.set_seed(4)
    m, bn = _bn_model(dtype="float32")
    rng = np.random.default_rng(4)
    bn.trainable = False
    before = bn.get_weights()
    x, y = rng.standard_normal((8, 4, 4, 3)), rng.standard_normal((8, 2))
    m.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for a, b in zip(before, bn.get_weights()):
        assert np.array_equal(a, b)
    # training-mode forward of a frozen layer equals inference
    net = m.network
    out_train = net.forward(x.astype(np.float32), training=True)
    net.folding = False  # (folded, predict differs in the last bits: see the folding test)
    assert np.array_equal(out_train, m.predict(x))


def test_freezing_any_layer_stops_its_updates_only():
    cnnbp.set_seed(5)
    m, bn = _bn_model(dtype="float32")
    conv, dense = m.layers[0], m.layers[3]
    conv.trainable = False
    assert len(m.trainable_weights) == 4 and not conv.trainable_weights
    k0, d0 = conv.get_weights(), dense.get_weights()
    rng = np.random.default_rng(5)
    m.compile(optimizer=cnnbp.optimizers.Adam(1e-2, weight_decay=0.1), loss="mse")
    m.fit(rng.standard_normal((8, 4, 4, 3)), rng.standard_normal((8, 2)), epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(k0, conv.get_weights()))
    assert not np.array_equal(d0[0], dense.get_weights()[0])
    lines = []
    m.summary(print_fn=lines.append)
    text = "\n".join(lines)
    n_conv = 3 * 3 * 3 * 5 + 5
    assert f"Non-trainable params: {n_conv + 10:,}" in text
    conv.trainable = True
    m.fit(rng.standard_normal((8, 4, 4, 3)), rng.standard_normal((8, 2)), epochs=1, verbose=0)
    assert not np.array_equal(k0[0], conv.get_weights()[0])


def test_trainable_flag_survives_save_and_json(tmp_path):
    m, bn = _bn_model(dtype="float32")
    bn.trainable = False
    m.save(tmp_path / "m.cnnbp")
    m2 = cnnbp.load_model(tmp_path / "m.cnnbp")
    assert not m2.get_layer(bn.name).trainable
    assert not cnnbp.io.model_from_json(cnnbp.io.model_to_json(m)).get_layer(bn.name).trainable


def test_bad_axis_and_arguments():
    with pytest.raises(ValueError, match="only the channel axis"):
        cnnbp.Sequential([Input((4, 4, 3)), BatchNormalization(axis=1)]).summary()
    with pytest.raises(ValueError, match="momentum must be in"):
        BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        BatchNormalization(epsilon=0)


def test_inference_folds_batch_norm_into_the_convolution():
    """predict/evaluate fold each inference BatchNormalization into the convolution before it
    (scaled weights, shifted bias, the ReLU in the kernel's store): the same outputs as the
    unfolded pair within 1e-5, on a ResNet whose moving statistics have moved."""
    cnnbp.set_seed(8)
    m = cnnbp.applications.resnet(8, (12, 12, 2), 4)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 12, 12, 2)).astype(np.float32) * 2 + 0.5
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 32)]
    m.compile(optimizer=cnnbp.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy")
    m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    net = m.network
    n_bn = sum(type(l).__name__ == "BatchNormalization" for l in m.layers)
    # Every BN of a ResNet follows its own conv; a block's last one runs with its Add and may write
    # the sum over the residual it reads, where a fold would write before reading it: not folded.
    assert net.folding and n_bn - len(m._residual) <= net.folded_pairs <= n_bn
    folded = m.predict(x, verbose=0)
    loss_f = m.evaluate(x, y, verbose=0)
    net.forward(x, training=False)  # forward() never folds: every layer's output is kept
    unfolded = net.activation(len(net.layer_info()) - 1)
    ref.assert_close(folded, unfolded, 1e-5, "folded vs unfolded")
    net.folding = False
    ref.assert_close(m.predict(x, verbose=0), unfolded, 1e-6, "folding off")
    assert abs(m.evaluate(x, y, verbose=0) - loss_f) < 1e-5 * max(1.0, abs(loss_f))
    net.folding = True
    # After a folded pass the convolution kept no output: asking for it is a clear error.
    conv = next(i for i, n in enumerate(net.layer_info()) if n["kind"] == "Conv2D")
    m.predict(x[:4], verbose=0)
    with pytest.raises(ValueError, match="folded into"):
        net.activation(conv)


def test_no_folding_where_the_convolution_has_another_reader_or_an_activation():
    x = Input((6, 6, 1))
    a = Conv2D(3, 3, padding="same")(x)
    two = cnnbp.Model(x, cnnbp.layers.Add()([BatchNormalization()(a), a]))  # the conv has two readers
    act = cnnbp.Sequential([Input((6, 6, 1)), Conv2D(3, 3, activation="tanh"), BatchNormalization()])
    dense = cnnbp.Sequential([Input((4,)), Dense(3), BatchNormalization()])  # convolutions only
    assert two.network.folded_pairs == 0 and act.network.folded_pairs == 0 and dense.network.folded_pairs == 0
    ok = cnnbp.Sequential([Input((6, 6, 1)), Conv2D(3, 3, use_bias=False), BatchNormalization(center=False,
                                                                                               scale=False)])
    assert ok.network.folded_pairs == 1
    xs = np.random.default_rng(0).standard_normal((5, 6, 6, 1)).astype(np.float32)
    ok.network.forward(xs, training=False)
    ref.assert_close(ok.predict(xs, verbose=0), ok.network.activation(1), 1e-5)


# ---- LayerNormalization -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(7,), (4, 6), (3, 4, 5)])
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_layer_normalization(rng, shape, center, scale):
    from cnnbp.layers import Input, LayerNormalization
    layer = LayerNormalization(epsilon=1e-3, center=center, scale=scale)
    i = Input(shape)
    m = cnnbp.Model(i, layer(i), dtype="float64")
    w = [rng.uniform(0.5, 1.5, shape[-1]) if scale else None, rng.standard_normal(shape[-1]) if center else None]
    layer.set_weights([v for v in w if v is not None])
    x = 3 * rng.standard_normal((4,) + shape) + 1
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expect = (x - mu) / np.sqrt(var + 1e-3) * (w[0] if scale else 1) + (w[1] if center else 0)
    y = m.predict(x, verbose=0)
    assert np.allclose(y, expect, atol=1e-12)
    assert np.array_equal(m.network.forward(x, training=True), y)   # the same in training
    assert cnnbp.gradcheck(m, x, rng.standard_normal(y.shape), loss="mse", print_fn=None).ok


def test_layer_normalization_equals_pytorch(rng):
    torch = pytest.importorskip("torch")
    from cnnbp.layers import Input, LayerNormalization
    layer = LayerNormalization()
    i = Input((5, 6))
    m = cnnbp.Model(i, layer(i), dtype="float64")
    g, b = rng.standard_normal(6), rng.standard_normal(6)
    layer.set_weights([g, b])
    x = rng.standard_normal((3, 5, 6))
    t = torch.nn.functional.layer_norm(torch.from_numpy(x), (6,), torch.from_numpy(g), torch.from_numpy(b), eps=1e-3)
    assert np.allclose(m.predict(x, verbose=0), t.numpy(), atol=1e-12)


def test_layer_normalization_arguments():
    from cnnbp.layers import LayerNormalization
    with pytest.raises(ValueError, match="only axis=-1"):
        LayerNormalization(axis=1)
    with pytest.raises(ValueError, match="epsilon"):
        LayerNormalization(epsilon=0)
