"""Weight regularizers: the penalty in the reported loss, its gradient in the update (against the
formula, float64, 1e-12), frozen layers left alone, and the configuration saved and rebuilt."""

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L, regularizers as R
import reference as ref


def _model(**regs):
    cnnbp.set_seed(5)
    i = L.Input((6, 6, 2))
    conv = L.Conv2D(3, 3, name="conv", kernel_regularizer=regs.get("conv"), bias_regularizer=regs.get("conv_bias"))
    dw = L.DepthwiseConv2D(3, name="dw", depthwise_regularizer=regs.get("dw"))
    dense = L.Dense(4, name="dense", kernel_regularizer=regs.get("dense"))
    m = cnnbp.Model(i, dense(L.Flatten()(dw(conv(i)))), dtype="float64")
    return m, conv, dw, dense


def test_penalty_and_its_gradient(rng):
    regs = dict(conv=R.L2(0.01), conv_bias=R.L1(0.1), dw=R.L1L2(0.02, 0.03), dense="l1_l2")
    m, conv, dw, dense = _model(**regs)
    for layer in (conv, dw, dense):
        layer.set_weights([w + rng.standard_normal(w.shape) * 0.1 for w in layer.get_weights()])
    m.compile(optimizer=cnnbp.optimizers.SGD(0.1), loss="mse")
    x, y = rng.standard_normal((5, 6, 6, 2)), rng.standard_normal((5, 4))
    k, b = conv.get_weights()
    (d,) = dw.get_weights()[:1]
    penalty = (0.01 * np.sum(k ** 2) + 0.1 * np.sum(np.abs(b)) + 0.02 * np.sum(np.abs(d)) + 0.03 * np.sum(d ** 2)
               + 0.0 * np.sum(np.abs(dense.kernel)) + 0.0 * np.sum(dense.kernel ** 2))
    data_loss = float(np.mean((m.predict(x, verbose=0) - y) ** 2))
    assert abs(m.evaluate(x, y, verbose=0) - (data_loss + penalty)) < 1e-12
    assert abs(R.L2(0.01)(k) - 0.01 * np.sum(k ** 2)) < 1e-15

    net = m.network
    p = np.array(net.flat_params())
    net.forward(x, training=True)
    net.backward(y)
    g = np.array(net.flat_grads())                       # the data loss's gradient
    expect_g = g.copy()
    for layer, pname, reg in ((conv, "kernel", regs["conv"]), (conv, "bias", regs["conv_bias"]),
                              (dw, "depthwise_kernel", regs["dw"])):
        off, shape = layer._params[pname]
        w = p[off:off + int(np.prod(shape))]
        expect_g[off:off + w.size] += reg.l1 * np.sign(w) + 2 * reg.l2 * w
    net.apply_update()
    ref.assert_close(net.flat_params(), p - 0.1 * expect_g, 1e-12)
    before = m.evaluate(x, y, verbose=0)               # no dropout or BatchNormalization: train = inference
    assert abs(m.train_on_batch(x, y) - before) < 1e-12  # train_step reports data loss + penalty before the update


def test_frozen_layers_are_not_penalised_and_config_round_trips(rng, tmp_path):
    m, conv, dw, dense = _model(conv=R.L2(0.5), dense=R.L1(0.5))
    m.compile(optimizer=cnnbp.optimizers.SGD(0.1), loss="mse")
    x, y = rng.standard_normal((4, 6, 6, 2)), rng.standard_normal((4, 4))
    before = m.network.regularization_loss()
    conv.trainable = False
    dense.trainable = False
    m.compile(optimizer=cnnbp.optimizers.SGD(0.1), loss="mse")
    assert m.network.regularization_loss() == 0.0 < before
    w0 = conv.get_weights()
    m.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(w0, conv.get_weights()))
    cfg = conv.get_config()
    assert cfg["kernel_regularizer"] == {"class_name": "L2", "config": {"l2": 0.5}}
    again = L.Conv2D.from_config(cfg) if hasattr(L.Conv2D, "from_config") else L.Conv2D(**cfg)
    assert isinstance(again._regularizers["kernel"], R.L2) and again._regularizers["kernel"].l2 == 0.5
    m.save(tmp_path / "r.cnnbp")
    back = cnnbp.load_model(tmp_path / "r.cnnbp")
    assert back.get_layer("conv")._regularizers["kernel"].l2 == 0.5


def test_bad_regularizers():
    with pytest.raises(ValueError, match="kernel_regularizer.*callables are not supported"):
        L.Dense(3, kernel_regularizer=lambda w: 0.0)
    with pytest.raises(ValueError, match="l2 must be"):
        R.L2(-1)
    with pytest.raises(ValueError, match="activity_regularizer is not supported"):
        L.Dense(3, activity_regularizer="l2")
    with pytest.raises(TypeError, match="unexpected keyword"):
        L.MaxPooling2D(kernel_regularizer="l2")
