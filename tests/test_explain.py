"""Saliency maps and Grad-CAM: finite differences, and cases with a known answer."""

import numpy as np
import pytest

import cnnbp
from cnnbp.layers import Conv2D, Dense, Flatten, GlobalAveragePooling2D, Input, MaxPooling2D

import reference as ref


def test_saliency_matches_finite_differences_of_the_logit():
    cnnbp.set_seed(3)
    m = cnnbp.Sequential([Input((6, 6, 2)), Conv2D(3, 3, padding="same", activation="tanh"), MaxPooling2D(),
                          Flatten(), Dense(4, activation="softmax")], dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6, 2))
    s = cnnbp.explain.saliency(m, x, class_index=2, reduce=None)
    net = m.network

    def logit():
        net.forward(xx, training=False)
        return net.activation(len(net.layer_info()) - 2)[:, 2].sum()

    xx = x.copy()
    num = ref.numerical_grad(logit, xx)
    assert ref.rel_error(s, np.abs(num)) < 1e-6
    assert cnnbp.explain.saliency(m, x, class_index=2).shape == (2, 6, 6)


def test_saliency_known_answer_linear_model():
    m = cnnbp.Sequential([Input((3, 4, 1)), Flatten(), Dense(2, activation="softmax")])
    w = np.arange(24, dtype=np.float32).reshape(12, 2) - 11
    m.set_weights([w, np.zeros(2, np.float32)])
    x = np.random.default_rng(1).random((5, 3, 4, 1), dtype=np.float32)
    s = cnnbp.explain.saliency(m, x, class_index=1)
    assert np.allclose(s, np.broadcast_to(np.abs(w[:, 1]).reshape(3, 4), (5, 3, 4)))
    # default class: the prediction of each sample
    pred = m.predict(x).argmax(1)
    s0 = cnnbp.explain.saliency(m, x)
    for i in range(5):
        assert np.allclose(s0[i], np.abs(w[:, pred[i]]).reshape(3, 4))


def test_grad_cam_points_at_the_bright_region():
    # 1x1 conv with weight 1 and ReLU, global average pooling, class 0 = the mean brightness:
    # the class score's gradient is uniform, so the map follows the input.
    m = cnnbp.Sequential([Input((8, 8, 1)), Conv2D(1, 1, activation="relu"), GlobalAveragePooling2D(),
                          Dense(2, activation="softmax")])
    m.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32),
                   np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, 2:4, 5:7, 0] = 1.0
    cam = cnnbp.explain.grad_cam(m, x, class_index=0)
    assert cam.shape == (1, 8, 8) and cam.min() >= 0 and cam.max() == 1.0
    assert np.array_equal(cam[0] > 0.5, x[0, :, :, 0] > 0.5)


def test_grad_cam_on_a_trained_net_and_errors():
    cnnbp.set_seed(0)
    m = cnnbp.Sequential([Input((8, 8, 1)), Conv2D(4, 3, activation="relu", name="c1"), MaxPooling2D(),
                          Conv2D(4, 2, activation="relu", name="c2"), Flatten(), Dense(2, activation="softmax")])
    x = np.random.default_rng(2).random((3, 8, 8, 1), dtype=np.float32)
    cam = cnnbp.explain.grad_cam(m, x)
    assert cam.shape == (3, 8, 8) and np.all((cam >= 0) & (cam <= 1))
    assert cnnbp.explain.grad_cam(m, x, layer="c1").shape == (3, 8, 8)
    with pytest.raises(ValueError, match="Conv2D"):
        cnnbp.explain.grad_cam(m, x, layer=m.layers[-1])
    with pytest.raises(ValueError, match="class_index"):
        cnnbp.explain.saliency(m, x, class_index=5)


def test_saliency_and_grad_cam_on_a_resnet():
    cnnbp.set_seed(4)
    m = cnnbp.applications.resnet(8, (12, 12, 1), 3)
    x = np.random.default_rng(3).random((2, 12, 12, 1), dtype=np.float32)
    s = cnnbp.explain.saliency(m, x)
    assert s.shape == (2, 12, 12) and np.all(np.isfinite(s)) and s.max() > 0
    # The default Grad-CAM layer is the last block's output, just before the global pooling.
    from cnnbp.explain import _default_cam_layer
    last = _default_cam_layer(m)
    assert type(last).__name__ == "ReLU" and type(m.layers[m.layers.index(last) + 1]).__name__ == "GlobalAveragePooling2D"
    cam = cnnbp.explain.grad_cam(m, x)
    assert cam.shape == (2, 12, 12) and np.all((cam >= 0) & (cam <= 1))
    # A BatchNormalization whose ReLU runs inside it has no pre-ReLU output to show.
    bn = next(l for l in m.layers if type(l).__name__ == "BatchNormalization" and l.name in m._fused)
    with pytest.raises(ValueError, match=f"use layer='{m._fused[bn.name]}'"):
        cnnbp.explain.grad_cam(m, x, layer=bn)
    # Nor one that runs inside the Add after it (a block's second normalisation).
    add, bn2 = next(iter(m._residual.items()))
    with pytest.raises(ValueError, match=f"inside the node of the Add layer '{add}'"):
        cnnbp.explain.grad_cam(m, x, layer=bn2)
    # The gradient at a block output (read by the next block's convolution and by its identity
    # shortcut: the two contributions are summed) carried back to the input equals the input
    # gradient computed in one pass, and that equals finite differences (float64, inference).
    m64 = cnnbp.io.model_from_json(cnnbp.io.model_to_json(m).replace('"float32"', '"float64"'))
    m64.set_weights(m.get_weights())
    net = m64.network
    xd = x.astype(np.float64)
    net.forward(xd, training=False)
    info = net.layer_info()
    # the first Add's node (the BatchNormalization before it and the ReLU after it run in it)
    target = next(l for l in m64.layers if type(l).__name__ == "Add")._out_node
    assert sum(target in n["inputs"] for n in info) == 2
    from_node = len(info) - 1  # the logits, before the softmax
    dout = np.zeros((2, 3))
    dout[:, 1] = 1.0
    g_target = net.backward_to(dout, from_node, target)
    g_input = net.backward_to(dout, from_node, -1)
    ref.assert_close(net.backward_to(g_target, target + 1, -1), g_input, 1e-10)

    def logit():
        net.forward(xd, training=False)
        return float(net.activation(from_node - 1)[:, 1].sum())

    # a small step: with h = 1e-5 one of the 288 pixels moves a ReLU input across 0
    ref.assert_close(g_input, ref.numerical_grad(logit, xd, 1e-7), 1e-6)
