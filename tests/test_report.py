"""cnnbp.report: one self-contained, escaped HTML page per run; checked as text and, in a real
headless Chromium (installed by .ci/run), for decoded images, no script, no console message, and
a class name carrying HTML shown as text."""

import base64
import os
import re

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L

PAYLOAD = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 1-epoch run on the bundled subset with a GradientMonitor, class names that carry HTML."""
    d = tmp_path_factory.mktemp("report")
    (x, y), (xt, yt) = cnnbp.datasets.load_fashion_mnist(subset=True)
    x, xt = x[..., None].astype(np.float32) / 255, xt[..., None].astype(np.float32) / 255
    cnnbp.set_seed(0)
    model = cnnbp.Sequential([L.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(),
                              L.Flatten(), L.Dense(10, activation="softmax")], name="small <b>cnn</b>")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    mon = cnnbp.callbacks.GradientMonitor(every=20, warn=False)
    h = model.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_data=(xt, yt), callbacks=[mon])
    names = [PAYLOAD] + list(cnnbp.datasets.FASHION_MNIST_CLASSES[1:])
    path = cnnbp.report.write(str(d), model, xt, yt, names, history=h, monitor=mon,
                              config={"data": "folder 'a&b'"}, command="cnnbp train --out '<x>'",
                              warnings=["layer 'q<script>': test"])
    return d, path


def test_report_is_self_contained_and_escaped(run_dir):
    d, path = run_dir
    with open(path, encoding="utf-8") as f:
        page = f.read()
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    assert PAYLOAD not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "small &lt;b&gt;cnn&lt;/b&gt;" in page and "folder &#x27;a&amp;b&#x27;" in page
    assert "q&lt;script&gt;" in page and "cnnbp train --out &#x27;&lt;x&gt;&#x27;" in page
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(srcs) == 3 + 2 * 12  # curves, confusion, gradient flow, and 12 images with their saliency maps
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for section in ("Configuration", "Model", "Training curves", "confusion matrix", "Accuracy per class",
                    "Gradient flow", "Warnings", "worst-classified test images"):
        assert section in page


def test_report_in_headless_chromium(run_dir):
    import browser_check
    if browser_check.chromium() is None:
        if os.environ.get("CNNBP_REQUIRE_BROWSER"):
            pytest.fail("CNNBP_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("no chromium (apt-get install chromium); .ci/run installs it")
    d, path = run_dir
    shot = os.path.join(d, "report.png")
    r = browser_check.check(path, screenshot=shot, text=PAYLOAD)
    assert r["images"] == 27 and r["decoded"] == 27, r
    assert r["scripts"] == 0 and r["console"] == [], r
    assert r["matches"] == 0 and r["shows_text"] is True, r  # the class name is text, not an element
    assert r["title"] == "cnnbp training report"
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(shot) > 50_000


def test_browser_check_sees_broken_pages(tmp_path):
    """The checker itself: a page with a script, a console error, an image that does not decode and
    an injected element is reported as such (so the test above can fail)."""
    import browser_check
    if browser_check.chromium() is None:
        pytest.skip("no chromium")
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="data:image/png;base64,AAAA">'
                   f"{PAYLOAD}<script>alert(2)</script></body></html>")
    r = browser_check.check(str(bad), screenshot=str(tmp_path / "no.png"), text=PAYLOAD)
    assert r["scripts"] == 1 and r["images"] == 2 and r["decoded"] == 0
    assert r["matches"] == 1 and r["shows_text"] is False
    assert not (tmp_path / "no.png").exists()  # never opened unsandboxed
    noisy = tmp_path / "noisy.html"
    noisy.write_text('<html><body><img src="data:image/png;base64,' + base64.b64encode(b"not a png" * 8).decode()
                     + '"><link rel="stylesheet" href="missing.css"></body></html>')
    r = browser_check.check(str(noisy))
    assert r["images"] == 1 and r["decoded"] == 0


def test_report_arguments(run_dir, tmp_path):
    model = cnnbp.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="2 class names for a model with 3 outputs"):
        cnnbp.report.write(str(tmp_path), model, np.zeros((2, 4), np.float32), [0, 1], ["a", "b"])
