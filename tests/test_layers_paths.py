"""The new layer kernels (UpSampling2D, Permute, Conv2DTranspose, depthwise and grouped
convolution, LayerNormalization, PReLU, the geometric augmentation warp) in float32 on every kernel path the CPU has, each in its own process
(CNNBP_CPU_CAPABILITY), against the float64 numpy references; their gradients on every path
through the training comparison below."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ISAS

_ISA_SCRIPT = r"""
import numpy as np, cnnbp, sys
from cnnbp import layers as L
sys.path.insert(0, "tests")
import reference as ref
assert cnnbp.cpu_capability() == sys.argv[1], cnnbp.cpu_capability()
rng = np.random.default_rng(0)
x = rng.standard_normal((3, 5, 6, 4)).astype(np.float32)
for interp in ("nearest", "bilinear"):
    i = L.Input((5, 6, 4)); m = cnnbp.Model(i, L.UpSampling2D((2, 3), interpolation=interp)(i))
    ref.assert_close(m.predict(x, verbose=0), ref.upsampling2d(x, (2, 3), interp == "bilinear"), 1e-6)
i = L.Input((5, 6, 4)); m = cnnbp.Model(i, L.Permute((3, 1, 2))(i))
assert np.array_equal(m.predict(x, verbose=0), x.transpose(0, 3, 1, 2))
for pad, st, op in (("valid", 1, None), ("same", 2, None), ("valid", 2, (1, 1)), ("same", 3, (2, 0))):
    i = L.Input((5, 6, 4)); layer = L.Conv2DTranspose(7, 3, strides=st, padding=pad, output_padding=op)
    m = cnnbp.Model(i, layer(i))
    w, b = layer.get_weights()
    b[:] = rng.standard_normal(7); layer.set_weights([w, b])
    ref.assert_close(m.predict(x, verbose=0), ref.conv2d_transpose(x, w, b, (st, st), pad, op), 1e-5)
for make, fn in ((lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
                  lambda l: ref.depthwise_conv2d(x, *l.get_weights(), (2, 2), "same")),
                 (lambda: L.DepthwiseConv2D(3, dilation_rate=2), lambda l: ref.depthwise_conv2d(x, *l.get_weights(),
                                                                                                 dilation=(2, 2))),
                 (lambda: L.Conv2D(6, 3, groups=2), lambda l: ref.grouped_conv2d(x, *l.get_weights(), 2))):
    i = L.Input((5, 6, 4)); layer = make(); m = cnnbp.Model(i, layer(i))
    ref.assert_close(m.predict(x, verbose=0), fn(layer), 1e-5)
x8 = rng.standard_normal((3, 5, 6, 8)).astype(np.float32)   # groups of 4 channels: per-group SIMD convolutions
i = L.Input((5, 6, 8)); layer = L.Conv2D(6, 3, groups=2, padding="same"); m = cnnbp.Model(i, layer(i))
ref.assert_close(m.predict(x8, verbose=0), ref.grouped_conv2d(x8, *layer.get_weights(), 2, padding="same"), 1e-5)
i = L.Input((5, 6, 4)); ln = L.LayerNormalization(); pr = L.PReLU(shared_axes=[1, 2]); m = cnnbp.Model(i, pr(ln(i)))
pr.set_weights([np.full((1, 1, 4), 0.2)])
z = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-3)
ref.assert_close(m.predict(x, verbose=0), np.where(z > 0, z, 0.2 * z), 1e-5)
for layer, A in ((L.RandomRotation((0.1, 0.1), fill_mode="reflect", seed=0), ref.rotation_map(5, 6, 0.1)),
                 (L.RandomZoom((0.3, 0.3), fill_mode="constant", seed=0), ref.zoom_map(5, 6, 0.3, 0.3))):
    i = L.Input((5, 6, 4)); m = cnnbp.Model(i, layer(i))
    y = m.network.forward(x, training=True)
    for a, b in zip(x, y):
        ref.assert_close(b, ref.warp(a.astype(np.float64), A, fill_mode=layer.fill_mode), 1e-6)
print("ok")
"""


PATHS = [i for i in ISAS if i != "avx2-wide"]


def _run(script, isa, *args):
    """script in a process whose kernels are isa's (from the repository root, for tests/)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", script, isa, *args], cwd=root, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, CNNBP_CPU_CAPABILITY=isa))


@pytest.mark.parametrize("isa", PATHS)
def test_every_kernel_path(isa):
    r = _run(_ISA_SCRIPT, isa)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


_TRAIN_SCRIPT = r"""
import numpy as np, cnnbp, sys
from cnnbp import layers as L
cnnbp.set_seed(0)
i = L.Input((8, 8, 3))
h = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu")(i)
h = L.Conv2D(8, 3, padding="same", groups=2)(L.Conv2D(8, 1, groups=2)(h))   # groups of 3, then of 4 channels
h = L.Conv2DTranspose(3, 3, strides=2, padding="same")(h)
h = L.UpSampling2D(2, interpolation="bilinear")(L.Permute((2, 1, 3))(h))
m = cnnbp.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
m.compile(optimizer=cnnbp.optimizers.SGD(0.05), loss="mse")
rng = np.random.default_rng(1)
x, y = rng.standard_normal((16, 8, 8, 3)).astype(np.float32), rng.standard_normal((16, 2)).astype(np.float32)
m.fit(x, y, epochs=3, batch_size=8, verbose=0, shuffle=False)
np.save(sys.argv[2], np.concatenate([w.ravel() for w in m.get_weights()]))
"""


PATHS = [i for i in ISAS if i != "avx2-wide"]


def _run(script, isa, *args):
    """script in a process whose kernels are isa's (from the repository root, for tests/)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", script, isa, *args], cwd=root, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, CNNBP_CPU_CAPABILITY=isa))


@pytest.mark.parametrize("isa", PATHS)
def test_every_kernel_path(isa):
    r = _run(_ISA_SCRIPT, isa)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_training_through_the_new_layers_agrees_on_every_path(tmp_path):
    """Three epochs of training through all of them (forward, backward, update) end at the same
    weights on every kernel path, to float32 rounding."""
    results = {}
    for isa in PATHS:
        out = tmp_path / f"{isa}.npy"
        r = _run(_TRAIN_SCRIPT, isa, str(out))
        assert r.returncode == 0, r.stderr
        results[isa] = np.load(out)
    base = results["baseline"]
    for isa, w in results.items():
        assert np.allclose(w, base, rtol=1e-4, atol=1e-5), isa
