"""Plots: files are written; a missing matplotlib gives a clear message."""

import sys

import numpy as np
import pytest

import cnnbp
from cnnbp.layers import Conv2D, Dense, Flatten, Input


def small():
    m = cnnbp.Sequential([Input((6, 6, 1)), Conv2D(5, 3, activation="relu"), Flatten(), Dense(3, activation="softmax")])
    m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_history_confusion_filters(tmp_path):
    m = small()
    x = np.random.default_rng(0).random((30, 6, 6, 1), dtype=np.float32)
    y = np.arange(30) % 3
    h = m.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    for name, fn in [("h.png", lambda p: cnnbp.plot.history(h, p)),
                     ("c.png", lambda p: cnnbp.plot.confusion(y, m.predict(x).argmax(1), ["a", "b", "c"], p)),
                     ("f.png", lambda p: cnnbp.plot.filters(m, path=p))]:
        fn(tmp_path / name)
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="History"):
        cnnbp.plot.history({"acc": [1]})


def test_missing_matplotlib_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'cnnbp\[plot\]'"):
        cnnbp.plot.history({"loss": [1.0]})


def test_gradient_flow_and_activations(tmp_path):
    m = small()
    x = np.random.default_rng(0).random((40, 6, 6, 1), dtype=np.float32)
    y = np.arange(40) % 3
    mon = cnnbp.callbacks.GradientMonitor(every=2, warn=False)
    m.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[mon])
    fig = cnnbp.plot.gradient_flow(mon, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert [l.get_label() for l in fig.axes[0].get_lines()] == [m.layers[0].name, m.layers[2].name]
    fig = cnnbp.plot.activations(m, x[:10], path=tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert f"{m.layers[0].name} (Conv2D)" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="GradientMonitor that recorded"):
        cnnbp.plot.gradient_flow(cnnbp.callbacks.GradientMonitor())
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        cnnbp.plot.activations(m, x, layers=["nope"])


def test_filters_of_any_conv_layer(tmp_path):
    """plot.filters on a later convolution (many input channels, averaged) and on one inside a graph."""
    i = Input((8, 8, 3))
    a = Conv2D(4, 3, padding="same", name="first")(i)
    b = Conv2D(6, (3, 2), padding="same", name="second")(a)
    c = cnnbp.layers.Add()([Conv2D(6, 1, name="side")(a), b])
    m = cnnbp.Model(i, Dense(2)(Flatten()(c)))
    for name in ("second", "side"):
        fig = cnnbp.plot.filters(m, layer=name, path=tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert name in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="expected a Conv2D layer"):
        cnnbp.plot.filters(m, layer=m.layers[-1])
