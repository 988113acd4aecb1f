"""Winograd convolution (F(2x2,3x3) and F(4x4,3x3), csrc/kernels/simd/winograd.inl): every pass
against the float64 numpy reference over a grid of stride-1 3x3 shapes on every SIMD path and
thread count, the choice of algorithm (CNNBP_CONV_ALGO, the shape rule, measured 'auto'), and
whole networks whose gradients equal float64 finite differences with Winograd in the layers."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import cnnbp
from cnnbp import _core, ops

import reference as ref
from conftest import ISAS

# The SIMD paths (the portable kernels are direct only), and the AVX-512 tiling built for AVX2.
PATHS = [i for i in ISAS if i != "baseline"]
if "avx2" in PATHS and "avx2-wide" not in PATHS:
    PATHS.append("avx2-wide")
ALGOS = ["winograd2", "winograd4"]
# Error bound per algorithm (relative, whole array; assert_close also bounds every element by 10x):
# F(4x4)'s transforms scale by up to 8 and 1/24, about ten times F(2x2)'s rounding.
RTOL = {"winograd2": 2e-6, "winograd4": 2e-5}

# (N, H, W, C, K, padding): odd sizes and tiles cut by the border, channel counts off the vector
# width (tails), batch 1, an image smaller than a tile, explicit and asymmetric padding, 'valid'.
GRID = [
    (2, 8, 8, 32, 32, "same"),
    (1, 9, 7, 5, 17, "same"),
    (3, 6, 11, 20, 7, "same"),
    (2, 5, 5, 17, 33, "valid"),
    (1, 1, 1, 16, 16, "same"),
    (2, 3, 2, 3, 1, "same"),
    (2, 10, 13, 8, 40, ((0, 2), (1, 0))),
    (1, 12, 12, 64, 24, "same"),
    (4, 4, 4, 128, 128, "same"),
]
IDS = [f"n{g[0]}-{g[1]}x{g[2]}x{g[3]}-k{g[4]}-{g[5] if isinstance(g[5], str) else 'explicit'}" for g in GRID]


def _data(rng, g):
    N, H, W, C, K, pad = g
    x = rng.standard_normal((N, H, W, C))
    w = rng.standard_normal((3, 3, C, K)) / np.sqrt(9 * C)
    b = rng.standard_normal(K)
    return x, w, b


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("isa", PATHS)
@pytest.mark.parametrize("g", GRID, ids=IDS)
def test_winograd_passes_match_the_float64_reference(rng, g, isa, algo, threads):
    N, H, W, C, K, pad = g
    x, w, b = _data(rng, g)
    f32 = np.float32
    tol = RTOL[algo]
    assert ops.conv2d_algorithms(x.shape, w.shape, padding=pad, isa=isa, algo=algo) == dict(
        forward=algo, backward_data=algo, backward_weight=algo)
    y_ref = ref.conv2d(x, w, b, (1, 1), pad, (1, 1))
    y = ops.conv2d(x.astype(f32), w.astype(f32), b.astype(f32), padding=pad, isa=isa, algo=algo)
    ref.assert_close(y, y_ref, tol, "forward")
    yr = ops.conv2d(x.astype(f32), w.astype(f32), b.astype(f32), padding=pad, relu=True, isa=isa, algo=algo)
    ref.assert_close(yr, np.maximum(y_ref, 0), tol, "forward, fused ReLU")
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(dy, x, w, (1, 1), pad, (1, 1))
    dx = ops.conv2d_backward_data(dy.astype(f32), w.astype(f32), (H, W), padding=pad, isa=isa, algo=algo)
    ref.assert_close(dx, dx_ref, tol, "backward data")
    base = rng.standard_normal(dx.shape).astype(f32)
    acc = ops.conv2d_backward_data(dy.astype(f32), w.astype(f32), (H, W), padding=pad, add_to=base, isa=isa,
                                   algo=algo)
    ref.assert_close(acc, base + dx_ref, tol, "backward data, accumulate")
    mode, pads = (2, pad_tuple(pad)) if not isinstance(pad, str) else ({"valid": 0, "same": 1}[pad], (0, 0, 0, 0))
    dw, db = ops._o.conv2d_backward_weight_f32(dy.astype(f32), x.astype(f32), (3, 3), (1, 1), (1, 1), mode, pads,
                                               True, isa, algo)
    ref.assert_close(dw, dw_ref, tol, "backward weight")
    ref.assert_close(db, db_ref, 1e-6, "backward bias")


def pad_tuple(pad):
    (t, b), (l, r) = pad
    return (t, b, l, r)


@pytest.mark.parametrize("algo", ALGOS)
def test_winograd_really_runs_and_is_as_accurate_as_promised(rng, algo):
    # Forced Winograd gives other bits than direct (the transforms round differently): a test of
    # the algorithm, not of the direct kernels again; and F(2x2) is closer to float64 than F(4x4).
    g = (4, 16, 16, 64, 64, "same")
    x, w, b = _data(rng, g)
    y_ref = ref.conv2d(x, w, b, (1, 1), "same", (1, 1))
    f32 = np.float32
    direct = ops.conv2d(x.astype(f32), w.astype(f32), b.astype(f32), padding="same", algo="direct")
    wino = ops.conv2d(x.astype(f32), w.astype(f32), b.astype(f32), padding="same", algo=algo)
    assert not np.array_equal(direct, wino)
    err = ref.rel_error(wino, y_ref)
    assert err < RTOL[algo]
    if algo == "winograd4":
        f2 = ops.conv2d(x.astype(f32), w.astype(f32), b.astype(f32), padding="same", algo="winograd2")
        assert ref.rel_error(f2, y_ref) < err


@pytest.mark.parametrize("g", [
    ((2, 9, 9, 32), (3, 3), (2, 2), "same", (1, 1)),   # strided
    ((2, 9, 9, 32), (3, 3), (1, 1), "same", (2, 2)),   # dilated
    ((2, 9, 9, 32), (5, 5), (1, 1), "same", (1, 1)),   # not 3x3
    ((2, 9, 9, 32), (1, 1), (1, 1), "valid", (1, 1)),  # 1x1
], ids=["strided", "dilated", "5x5", "1x1"])
def test_shapes_winograd_does_not_take_run_direct_when_it_is_forced(rng, g):
    shape, ks, st, pad, dil = g
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(ks + (shape[3], 32)).astype(np.float32)
    assert set(ops.conv2d_algorithms(x.shape, w.shape, st, pad, dil, algo="winograd4").values()) == {"direct"}
    a = ops.conv2d(x, w, strides=st, padding=pad, dilation_rate=dil, algo="winograd4")
    d = ops.conv2d(x, w, strides=st, padding=pad, dilation_rate=dil, algo="direct")
    assert np.array_equal(a, d)


@pytest.mark.parametrize("isa", PATHS)
def test_the_shape_rule(isa):
    # The rule (CNNBP_CONV_ALGO unset in the test environment): F(4x4) when both channel counts of
    # the pass are >= 16 with 16-float vectors (AVX-512's tiling), >= 32 with 8-float ones (AVX2);
    # the data gradient swaps them.
    if os.environ.get("CNNBP_CONV_ALGO"):
        pytest.skip("CNNBP_CONV_ALGO is set")
    least = 32 if isa == "avx2" else 16

    def algos(c, k, **kw):
        return ops.conv2d_algorithms((8, 16, 16, c), (3, 3, c, k), padding="same", isa=isa, **kw)

    assert algos(32, 64) == dict(forward="winograd4", backward_data="winograd4", backward_weight="winograd4")
    assert set(algos(least, 64).values()) == {"winograd4"}
    assert set(algos(least - 1, 64).values()) == {"direct"}
    assert algos(64, least - 1)["backward_data"] == "direct"
    assert set(algos(32, 64, strides=2).values()) == {"direct"}

    assert set(ops.conv2d_algorithms((8, 16, 16, 32), (3, 3, 32, 64), padding="same", isa="baseline").values()) == {
        "direct"}


def test_unknown_algorithm_is_refused():
    x = np.zeros((1, 4, 4, 2), np.float32)
    w = np.zeros((3, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="conv2d: algo must be"):
        ops.conv2d(x, w, algo="fft")


ENV_SCRIPT = r"""
import json, sys
import numpy as np
import cnnbp
from cnnbp import ops
rng = np.random.default_rng(7)
x = rng.standard_normal((2, 8, 8, 32)).astype(np.float32)
w = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
y = ops.conv2d(x, w, padding="same")
import io
cfg = io.StringIO()
cnnbp.show_config(file=cfg)
out = {"algos": ops.conv2d_algorithms(x.shape, w.shape, padding="same"), "config": cfg.getvalue()}
for a in ("direct", "winograd2", "winograd4"):
    out[a] = bool(np.array_equal(y, ops.conv2d(x, w, padding="same", algo=a)))
print(json.dumps(out))
"""


def _fresh(script, **env):
    e = dict(os.environ)
    e.pop("CNNBP_CONV_ALGO", None)
    e.update(env)
    p = subprocess.run([sys.executable, "-c", script], env=e, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


@pytest.mark.parametrize("setting,expected", [("direct", "direct"), ("winograd", "winograd4"),
                                              ("winograd2", "winograd2"), ("winograd4", "winograd4"),
                                              ("heuristic", "winograd4"), ("", "winograd4")])
def test_environment_variable_forces_the_algorithm(setting, expected):
    out, err = _fresh(ENV_SCRIPT, CNNBP_CONV_ALGO=setting)
    assert set(out["algos"].values()) == {expected}
    assert out[expected]  # the default call ran exactly that algorithm
    shown = {"": "heuristic", "winograd": "winograd4"}.get(setting, setting)
    assert re.search(rf"conv algorithm:\s+{shown} ", out["config"])


def test_unknown_environment_setting_warns_and_uses_the_rule():
    out, err = _fresh(ENV_SCRIPT, CNNBP_CONV_ALGO="fastest")
    assert "CNNBP_CONV_ALGO=fastest is not one of" in err
    assert set(out["algos"].values()) == {"winograd4"}


def test_auto_measures_each_shape_once_and_runs_its_choice():
    out, _ = _fresh(ENV_SCRIPT, CNNBP_CONV_ALGO="auto")
    chosen = out["algos"]["forward"]
    assert set(out["algos"].values()) <= {"direct", "winograd2", "winograd4"}
    assert out[chosen]
    assert re.search(r"conv algorithm:\s+auto ", out["config"])


# ---- whole networks ------------------------------------------------------------------------------

def _net(dtype):
    x = cnnbp.layers.Input((6, 7, 3))
    y = cnnbp.layers.Conv2D(32, 3, padding="same", activation="tanh")(x)
    z = cnnbp.layers.Conv2D(32, 3, padding="same", activation="tanh")(y)
    z = cnnbp.layers.Conv2D(33, 3, padding="valid", activation="tanh")(z)
    z = cnnbp.layers.Flatten()(z)
    z = cnnbp.layers.Dense(4, activation="softmax")(z)
    return cnnbp.Model(x, z, dtype=dtype)


def _grads(model, x, y):
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    net = model.network
    net.forward(x, training=True)
    loss, _, dx = net.backward(y, input_grad=True)
    return loss, np.array(net.flat_grads(), dtype=np.float64), np.asarray(dx, dtype=np.float64)


@pytest.mark.parametrize("isa", PATHS[:1])
def test_network_gradients_with_winograd_equal_finite_differences(rng, isa):
    # The float32 network runs F(4x4) in its 32-channel layers (the rule); its gradients equal the
    # float64 network's, which equal central finite differences of the float64 loss.
    cnnbp.set_seed(5)
    m32 = _net("float32")
    assert ops.conv2d_algorithms((3, 6, 7, 32), (3, 3, 32, 32), padding="same")["backward_weight"] == "winograd4" \
        or os.environ.get("CNNBP_CONV_ALGO")
    m64 = _net("float64")
    m64.set_weights([np.asarray(w, np.float64) for w in m32.get_weights()])
    x = rng.standard_normal((3, 6, 7, 3))
    y = np.eye(4)[rng.integers(0, 4, 3)]
    l32, g32, dx32 = _grads(m32, x.astype(np.float32), y.astype(np.float32))
    l64, g64, dx64 = _grads(m64, x, y)
    ref.assert_close(g32, g64, 2e-5, "parameter gradients")
    ref.assert_close(dx32, dx64, 2e-5, "input gradient")
    net = m64.network
    params = net.flat_params()  # a view of the network's parameters
    idx = np.random.default_rng(0).choice(params.size, 40, replace=False)
    num = []
    for i in idx:
        old = params[i]
        params[i] = old + 1e-5
        up = net.evaluate(x, y)[0]
        params[i] = old - 1e-5
        down = net.evaluate(x, y)[0]
        params[i] = old
        num.append((up - down) / 2e-5)
    ref.assert_close(g32[idx], np.array(num), 1e-4, "float32 Winograd gradient vs finite differences")


TRAIN_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import cnnbp
from cnnbp.layers import Input, Conv2D, MaxPooling2D, Flatten, Dense
cnnbp.set_num_threads(int(sys.argv[1]))
cnnbp.set_seed(1)
m = cnnbp.Sequential([Input((10, 9, 3)), Conv2D(32, 3, padding="same", activation="relu"),
                      Conv2D(40, 3, padding="same", activation="relu"), MaxPooling2D(),
                      Conv2D(36, 3, activation="relu"), Flatten(), Dense(5, activation="softmax")])
m.compile(optimizer="adam", loss="categorical_crossentropy")
rng = np.random.default_rng(0)
x = rng.random((42, 10, 9, 3), dtype=np.float32)
y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 42)]
for step in range(12):
    a = (step * 21) % 42
    m.network.train_step(x[a:a + 21], y[a:a + 21])
print(json.dumps([hashlib.sha1(np.ascontiguousarray(w).tobytes()).hexdigest() for w in m.get_weights()]))
"""


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("capability", [p for p in PATHS if p in ("avx2", "avx512")])
def test_training_with_winograd_gives_the_same_bits_on_any_thread_count(capability, algo):
    # Winograd's sums (the weight gradient over all tiles, per transformed position) are taken in
    # tile order by one thread each: 1, 2, 3 and 8 threads train to identical weights.
    runs = [_fresh(TRAIN_SCRIPT.replace("sys.argv[1]", str(t)), CNNBP_CONV_ALGO=algo,
                   CNNBP_CPU_CAPABILITY=capability)[0] for t in (1, 2, 3, 8)]
    assert all(r == runs[0] for r in runs[1:])
