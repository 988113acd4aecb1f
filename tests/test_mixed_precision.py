"""The mixed_bfloat16 policy: bf16 rounding against a numpy emulation, every conv2d and dense pass
against a float64 reference on bf16-rounded operands (emulated path, and the AVX512_BF16 kernels
where the CPU has them), the two paths against each other, the policy API, training and
save/load of a mixed-precision model."""

import os
import subprocess
import sys

import numpy as np
import pytest

import cnnbp
from cnnbp import _core, layers as L, mixed_precision, ops

import reference as ref
from test_ops_conv2d import GRID, IDS

HW = _core.bf16_detected() == "avx512_bf16"
PATHS = ["bf16-emulated"] + (["avx512_bf16"] if HW else [])


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    mixed_precision.set_global_policy("float32")


def _bf(a):
    return ref.bf16_round(a).astype(np.float64)


def _specials():
    v = [0.0, -0.0, 1.0, -1.0, 1.00390625, 1.005859375, 1.0078125, 1.01171875,   # ties to even: down, up
         3.0e38, -3.3e38, 3.3895314e38, 3.3961e38, 1e-38, 1.1754944e-38, 1e-40, -1e-41, 1e-45,  # overflow, tiny, subnormal
         np.inf, -np.inf, np.nan, 0.1, -123.456, 65504.0, 2.0 ** -126, 2.0 ** -133]
    return np.array(v, dtype=np.float32)


def test_numpy_bf16_emulation_known_values():
    top = np.array([0x7F7F0000, 0x7F7F8000], dtype=np.uint32).view(np.float32)  # largest bf16, halfway past it
    r = ref.bf16_round(np.array([1.00390625, 1.005859375, 1.0078125 + 2 ** -10, top[1], 1e-40, -1e-41,
                                 np.nan, top[0]], dtype=np.float32))
    assert r[0] == 1.0                   # halfway between 1 and 1+2^-7: to the even one, 1
    assert r[1] == 1.0078125             # above halfway: up
    assert r[2] == 1.0078125
    assert np.isinf(r[3])                # past the largest bf16
    assert r[4] == 0.0 and not np.signbit(r[4])
    assert r[5] == 0.0 and np.signbit(r[5])
    assert np.isnan(r[6])
    assert r[7] == top[0]


def _bits_equal(y, want):
    want = want + np.float32(0.0)   # a sum starting from 0: -0 becomes +0
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(np.asarray(y)[ok].view(np.uint32), want[ok].view(np.uint32))


@pytest.mark.parametrize("path", PATHS)
def test_operand_rounding_matches_numpy_emulation(path, rng):
    """Convolutions and dense layers with unit weights return their input rounded to bf16: the
    kernels round exactly as the numpy emulation. One channel carries the special values (inf*0
    would be NaN in a sum over channels); 16 channels with an identity kernel take the vector
    conversion (vcvtneps2bf16 on the hardware path) over ties, subnormals and extreme exponents."""
    x = np.concatenate([_specials(), (rng.standard_normal(1000) * 10.0 ** rng.integers(-30, 30, 1000))
                        .astype(np.float32)])
    x1 = x.reshape(1, 1, -1, 1)
    _bits_equal(ops.conv2d(x1, np.ones((1, 1, 1, 1), np.float32), isa=path), ref.bf16_round(x1))
    _bits_equal(ops.dense(x.reshape(-1, 1), np.ones((1, 1), np.float32), isa=path), ref.bf16_round(x.reshape(-1, 1)))
    fin = x[np.isfinite(x) & (np.abs(x) < 3.38e38)]
    C = 16
    x16 = np.resize(fin, (fin.size // C) * C).reshape(1, 1, -1, C)
    _bits_equal(ops.conv2d(x16, np.eye(C, dtype=np.float32).reshape(1, 1, C, C), isa=path), ref.bf16_round(x16))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("g", GRID, ids=IDS)
def test_conv2d_passes_against_bf16_reference(rng, g, path, threads):
    N, H, W, C, K, ks, st, pad, dil = g
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    w = rng.standard_normal(ks + (C, K)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    y = ops.conv2d(x, w, b, strides=st, padding=pad, dilation_rate=dil, isa=path)
    ref.assert_close(y, ref.conv2d(_bf(x), _bf(w), b.astype(np.float64), st, pad, dil), 1e-6, "forward")
    # the rounding is real: against unrounded operands the error is bf16's (~1e-3), not fp32's
    assert ref.rel_error(y, ref.conv2d(x.astype(np.float64), w.astype(np.float64), b, st, pad, dil)) > 1e-4
    yr = ops.conv2d(x, w, b, strides=st, padding=pad, dilation_rate=dil, relu=True, isa=path)
    np.testing.assert_array_equal(yr, np.maximum(y, 0))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx_ref, dw_ref, _ = ref.conv2d_backward(_bf(dy), _bf(x), _bf(w), st, pad, dil)
    dx = ops.conv2d_backward_data(dy, w, (H, W), strides=st, padding=pad, dilation_rate=dil, isa=path)
    ref.assert_close(dx, dx_ref, 1e-6, "backward data")
    base = rng.standard_normal(dx.shape).astype(np.float32)
    acc = ops.conv2d_backward_data(dy, w, (H, W), strides=st, padding=pad, dilation_rate=dil, add_to=base, isa=path)
    ref.assert_close(acc, base + dx_ref, 1e-6, "backward data, accumulate")
    dw, db = getattr(ops._o, "conv2d_backward_weight_f32")(
        dy, x, ks, *ops._conv_args(st, pad, dil), True, path)
    ref.assert_close(dw, dw_ref, 1e-6, "backward weight")
    ref.assert_close(db, dy.astype(np.float64).sum(axis=(0, 1, 2)), 1e-6, "bias: fp32 sums of the unrounded dy")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 33, 17), (64, 128, 10), (5, 3, 40)])
def test_dense_passes_against_bf16_reference(rng, shape, path):
    N, I, O = shape
    x = rng.standard_normal((N, I)).astype(np.float32)
    w = rng.standard_normal((I, O)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    ref.assert_close(ops.dense(x, w, b, isa=path), _bf(x) @ _bf(w) + b, 1e-6, "forward")
    dy = rng.standard_normal((N, O)).astype(np.float32)
    ref.assert_close(ops.dense_backward_data(dy, w, isa=path), _bf(dy) @ _bf(w).T, 1e-6, "backward data")
    base = rng.standard_normal((N, I)).astype(np.float32)
    ref.assert_close(ops.dense_backward_data(dy, w, add_to=base, isa=path), base + _bf(dy) @ _bf(w).T, 1e-6,
                     "backward data, accumulate")
    ref.assert_close(ops.dense_backward_weight(dy, x, isa=path), _bf(x).T @ _bf(dy), 1e-6, "backward weight")


@pytest.mark.parametrize("path", PATHS)
def test_wide_3x3_layers_run_the_float32_winograd_kernels(rng, path):
    """Where float32 runs a stride-1 3x3 pass as Winograd, the pass runs the float32 table's Winograd
    kernels once the layer is wide enough (faster than bf16 direct products there): the forward pass
    and data gradient from C*K = 32*64, the weight gradient from 128*128; narrower layers keep the
    bf16 kernels; a forced algorithm is taken as on the float32 table."""
    if os.environ.get("CNNBP_CONV_ALGO"):
        pytest.skip("CNNBP_CONV_ALGO is set")

    def algos(c, k, isa, **kw):
        return ops.conv2d_algorithms((2, 10, 9, c), (3, 3, c, k), padding="same", isa=isa, **kw)

    simd = _core.cpu_capability() != "baseline"   # (the portable float32 path is direct only)
    wino = "winograd4" if simd else "direct"
    assert algos(64, 72, path) == dict(forward=wino, backward_data=wino, backward_weight="direct")
    assert algos(64, 72, None)["backward_weight"] == wino   # float32 runs it as Winograd
    # the threshold is on C*K, the same for a pass and its transpose; above it each pass runs what
    # float32 runs
    for c, k in ((32, 64), (64, 32), (48, 48), (127, 129)):
        f32 = algos(c, k, None)
        assert algos(c, k, path) == dict(f32, backward_weight="direct"), (c, k)
        assert f32["forward"] == f32["backward_data"] == wino, (c, k)
    for c, k in ((128, 128), (256, 64), (129, 128)):
        assert algos(c, k, path) == algos(c, k, None), (c, k)
        assert set(algos(c, k, path).values()) == {wino}, (c, k)
    for c, k in ((32, 63), (63, 32), (32, 32), (16, 16)):
        assert set(algos(c, k, path).values()) == {"direct"}, (c, k)
    assert set(algos(64, 72, path, algo="direct").values()) == {"direct"}
    assert set(algos(64, 72, path, strides=2).values()) == {"direct"}
    assert set(algos(16, 16, path, algo="winograd2").values()) == {"winograd2" if simd else "direct"}

    # Where the Winograd kernels run, the results are the float32 table's to the bit (the operands
    # are not rounded: closer to the exact result than bf16 products).
    x = rng.standard_normal((2, 10, 9, 64)).astype(np.float32)
    w = rng.standard_normal((3, 3, 64, 72)).astype(np.float32)
    b = rng.standard_normal(72).astype(np.float32)
    dy = rng.standard_normal((2, 10, 9, 72)).astype(np.float32)
    for kw in (dict(), dict(algo="winograd2")) if simd else ():
        np.testing.assert_array_equal(ops.conv2d(x, w, b, padding="same", relu=True, isa=path, **kw),
                                      ops.conv2d(x, w, b, padding="same", relu=True, **kw))
        np.testing.assert_array_equal(ops.conv2d_backward_data(dy, w, (10, 9), padding="same", isa=path, **kw),
                                      ops.conv2d_backward_data(dy, w, (10, 9), padding="same", **kw))
        if kw:   # (forced only: by default the weight gradient stays bf16)
            np.testing.assert_array_equal(
                ops.conv2d_backward_weight(dy, x, (3, 3), padding="same", isa=path, **kw),
                ops.conv2d_backward_weight(dy, x, (3, 3), padding="same", **kw))
    if simd:   # from 128 x 128 channels the weight gradient too, by default
        x2 = rng.standard_normal((2, 6, 7, 128)).astype(np.float32)
        dy2 = rng.standard_normal((2, 6, 7, 128)).astype(np.float32)
        np.testing.assert_array_equal(ops.conv2d_backward_weight(dy2, x2, (3, 3), padding="same", isa=path),
                                      ops.conv2d_backward_weight(dy2, x2, (3, 3), padding="same"))
    # bf16 products elsewhere (against the float64 reference on rounded operands)
    dw_ref = ref.conv2d_backward(_bf(dy), _bf(x), _bf(w), (1, 1), "same", (1, 1))[1]
    ref.assert_close(ops.conv2d_backward_weight(dy, x, (3, 3), padding="same", isa=path), dw_ref, 1e-6,
                     "weight gradient")
    y = ops.conv2d(x, w, b, padding="same", isa=path, algo="direct")
    ref.assert_close(y, ref.conv2d(_bf(x), _bf(w), b.astype(np.float64), (1, 1), "same", (1, 1)), 1e-6, "forward")
    assert ref.rel_error(y, ref.conv2d(x.astype(np.float64), w.astype(np.float64), b, (1, 1), "same", (1, 1))) > 1e-4


@pytest.mark.skipif(not HW, reason="the CPU has no AVX512_BF16")
def test_hardware_path_agrees_with_emulated(rng):
    """Same rounded operands, exact products: the paths differ only in the order of fp32 additions."""
    x = rng.standard_normal((8, 16, 16, 32)).astype(np.float32)
    w = rng.standard_normal((3, 3, 32, 48)).astype(np.float32)
    # (direct forced: a layer of this size runs the fp32 Winograd kernels on both, see below)
    outs = [ops.conv2d(x, w, padding="same", isa=p, algo="direct") for p in PATHS]
    ref.assert_close(outs[1], outs[0], 2e-7, "forward")
    dy = rng.standard_normal(outs[0].shape).astype(np.float32)
    dws = [ops.conv2d_backward_weight(dy, x, (3, 3), padding="same", isa=p, algo="direct") for p in PATHS]
    ref.assert_close(dws[1], dws[0], 2e-7, "weight gradient")
    dxs = [ops.conv2d_backward_data(dy, w, (16, 16), padding="same", isa=p, algo="direct") for p in PATHS]
    ref.assert_close(dxs[1], dxs[0], 2e-7, "data gradient")


def test_hardware_path_refused_where_absent():
    if HW:
        assert _core.bf16_path() in ("avx512_bf16", "emulated")
        return
    with pytest.raises(ValueError, match="AVX512_BF16"):
        ops.conv2d(np.zeros((1, 3, 3, 1), np.float32), np.zeros((1, 1, 1, 1), np.float32), isa="avx512_bf16")


# ---- the policy API --------------------------------------------------------------------------------
def test_policy_names_and_errors():
    p = mixed_precision.Policy("mixed_bfloat16")
    assert (p.name, p.compute_dtype, p.variable_dtype) == ("mixed_bfloat16", "bfloat16", "float32")
    assert repr(p) == '<Policy "mixed_bfloat16">' and p == mixed_precision.Policy(p)
    assert mixed_precision.global_policy().name == "float32"
    for bad in ("mixed_float16", "bfloat16"):
        with pytest.raises(ValueError, match="use 'mixed_bfloat16'"):
            mixed_precision.set_global_policy(bad)
    with pytest.raises(ValueError, match="expected 'float32', 'float64' or 'mixed_bfloat16', got 'int8'"):
        mixed_precision.Policy("int8")
    with pytest.raises(ValueError, match="dtype must be"):
        cnnbp.Sequential([L.Input((4,)), L.Dense(2)], dtype="float16")


def _small():
    return cnnbp.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)])


def test_models_take_the_global_policy_when_created():
    mixed_precision.set_global_policy("mixed_bfloat16")
    m = _small()
    explicit = cnnbp.Sequential([L.Input((4,)), L.Dense(2)], dtype="float32")
    mixed_precision.set_global_policy(None)
    later = _small()
    assert m.dtype_policy.name == "mixed_bfloat16" and m.dtype == np.float32
    assert m.network.precision == "mixed_bfloat16"
    assert explicit.network.precision == "float32" and later.network.precision == "float32"
    assert cnnbp.Sequential([L.Input((4,)), L.Dense(2)], dtype=mixed_precision.Policy("mixed_bfloat16")) \
        .network.precision == "mixed_bfloat16"
    with pytest.raises(ValueError, match="needs a float32 model"):
        cnnbp.Sequential([L.Input((4,)), L.Dense(2)], dtype="float64").network.precision = "mixed_bfloat16"


def test_mixed_model_outputs_are_bf16_close_to_float32(rng):
    """The same weights: predictions and one step's gradients differ from float32 by bf16's rounding."""
    cnnbp.set_seed(3)
    a = cnnbp.Sequential([L.Input((12, 12, 3)), L.Conv2D(16, 3, padding="same", activation="relu"),
                          L.Conv2D(16, 3, strides=2), L.Flatten(), L.Dense(10)])
    b = cnnbp.Sequential([L.Input((12, 12, 3)), L.Conv2D(16, 3, padding="same", activation="relu"),
                          L.Conv2D(16, 3, strides=2), L.Flatten(), L.Dense(10)], dtype="mixed_bfloat16")
    b.set_weights(a.get_weights())
    x = rng.random((16, 12, 12, 3), dtype=np.float32)   # image-like: moderate logits, a well-conditioned loss
    pa, pb = a.predict(x, verbose=0), b.predict(x, verbose=0)
    err = ref.rel_error(pa, pb)
    assert 1e-5 < err < 2e-2, err
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)]
    w0 = a.get_weights()
    for m in (a, b):
        m.compile(optimizer=cnnbp.optimizers.SGD(0.01), loss="categorical_crossentropy")
        m.train_on_batch(x, y)
    for wa, wb, w in zip(a.get_weights(), b.get_weights(), w0):
        assert 1e-5 < ref.rel_error(wa - w, wb - w) < 2e-2   # the step's update: bf16 gradients


def test_mixed_model_trains_and_saves(tmp_path, rng):
    mixed_precision.set_global_policy("mixed_bfloat16")
    cnnbp.set_seed(0)
    m = cnnbp.Sequential([L.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(),
                          L.Flatten(), L.Dense(2, activation="softmax")])
    mixed_precision.set_global_policy("float32")
    x = rng.random((256, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(np.int64)
    m.compile(optimizer=cnnbp.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert h.history["accuracy"][-1] > 0.85   # chance: 0.5
    path = tmp_path / "m.cnnbp"
    m.save(path)
    back = cnnbp.load_model(path)   # the global policy is float32 now: the file's policy wins
    assert back.dtype_policy.name == "mixed_bfloat16" and back.network.precision == "mixed_bfloat16"
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    assert '"dtype": "mixed_bfloat16"' in cnnbp.io.model_to_json(m)
    assert cnnbp.io.model_from_json(cnnbp.io.model_to_json(m)).network.precision == "mixed_bfloat16"
    h2 = back.fit(x, y, epochs=1, batch_size=32, verbose=0)   # the optimizer state resumes
    assert h2.history["accuracy"][-1] > 0.85


def test_emulation_forced_by_environment():
    code = ("import cnnbp, numpy as np; from cnnbp import ops;"
            "print(cnnbp._core.bf16_path());"
            "import io; s = io.StringIO(); cnnbp.show_config(s); print([l for l in s.getvalue().splitlines() "
            "if 'bfloat16' in l][0])")
    for env, want in ((dict(CNNBP_BF16="emulated"), "emulated"), (dict(CNNBP_CPU_CAPABILITY="avx2"), "emulated"),
                      ({}, "avx512_bf16" if HW else "emulated")):
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True,
                             text=True, check=True).stdout.splitlines()
        assert out[0] == want, (env, out)
        assert out[1].split(":", 1)[1].strip().startswith(want)
