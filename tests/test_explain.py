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
