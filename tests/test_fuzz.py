"""Property-based fuzzing of the public entry points (hypothesis): random shapes (including
zero-sized ones), dtypes, memory layouts (Fortran order, negative strides, slices, read-only),
NaN/Inf and wrong types. Each case either works and equals the same call on a contiguous float32
copy, or raises a ValueError/TypeError; none crashes, and later calls still work."""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cnnbp
from cnnbp import ops
from cnnbp.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float32, np.float64, np.int32, np.uint8, np.bool_, np.float16]


@st.composite
def arrays(draw, shape):
    """An array of the shape with a random dtype and a random memory layout."""
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = (rng.standard_normal(shape) * 3).astype(dtype)
    layout = draw(st.sampled_from(["c", "fortran", "reversed", "strided", "readonly"]))
    if layout == "fortran":
        a = np.asfortranarray(a)
    elif layout == "reversed" and a.ndim and a.shape[0] > 0:
        a = np.ascontiguousarray(a[::-1])[::-1]
    elif layout == "strided":
        big = np.zeros(tuple(2 * s for s in shape), dtype=dtype)
        big[tuple(slice(None, None, 2) for _ in shape)] = a
        a = big[tuple(slice(None, None, 2) for _ in shape)]
    elif layout == "readonly":
        a.setflags(write=False)
    return a


def same_or_clean_error(fn, *args, **kw):
    try:
        out = fn(*args, **kw)
    except (ValueError, TypeError):
        return None
    return out


@SETTINGS
@given(st.data(), st.integers(0, 3), st.integers(1, 7), st.integers(1, 7), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 4), st.integers(1, 3), st.integers(1, 2), st.sampled_from(["valid", "same", 0, 1, 2]))
def test_conv2d_any_input(data, n, h, w, c, k, ks, stride, dil, padding):
    x = data.draw(arrays((n, h, w, c)))
    wt = data.draw(arrays((ks, ks, c, k)))
    if stride > 1 and dil > 1:
        dil = 1
    out = same_or_clean_error(ops.conv2d, x, wt, strides=stride, padding=padding, dilation_rate=dil)
    if out is None:
        return
    x32 = np.ascontiguousarray(x, dtype=np.float32) if x.dtype != np.float64 else x
    w32 = np.ascontiguousarray(wt, dtype=np.float32) if wt.dtype != np.float64 else wt
    ref = ops.conv2d(x32, w32, strides=stride, padding=padding, dilation_rate=dil)
    assert out.shape == ref.shape
    assert np.array_equal(out, ref, equal_nan=True)


@SETTINGS
@given(st.data(), st.integers(0, 4), st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.integers(1, 3),
       st.sampled_from(["valid", "same"]))
def test_pooling_any_input(data, n, h, w, c, pool, padding):
    x = data.draw(arrays((n, h, w, c)))
    for fn in (ops.max_pool2d, ops.avg_pool2d):
        out = same_or_clean_error(fn, x, pool, None, padding)
        if out is not None:
            x32 = np.ascontiguousarray(x, dtype=np.float32) if x.dtype != np.float64 else x
            assert np.array_equal(out, fn(x32, pool, None, padding), equal_nan=True)


@pytest.fixture(scope="module")
def model():
    cnnbp.set_seed(0)
    m = cnnbp.Sequential([Input((6, 6, 2)), Conv2D(3, 3, activation="relu"), MaxPooling2D(), Flatten(),
                          Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


shapes = st.one_of(st.just((4, 6, 6, 2)), st.just((0, 6, 6, 2)), st.just((4, 6, 6)), st.just((4, 6, 2, 6)),
                   st.just((1, 6, 6, 2, 1)), st.just((4,)), st.just(()), st.just((3, 6, 6, 3)))


@SETTINGS
@given(st.data(), shapes, st.sampled_from([None, "nan", "inf"]))
def test_predict_any_input(model, data, shape, special):
    x = data.draw(arrays(shape))
    if special and x.size and np.issubdtype(x.dtype, np.floating):
        x = np.array(x)
        x.flat[0] = np.nan if special == "nan" else np.inf
    out = same_or_clean_error(model.predict, x)
    if out is not None:
        ref = model.predict(np.ascontiguousarray(x, dtype=np.float32))
        assert np.array_equal(out, ref, equal_nan=True)
    assert model.predict(np.zeros((1, 6, 6, 2), np.float32)).shape == (1, 3)  # still works


@SETTINGS
@given(st.data(), st.integers(1, 6), st.lists(st.integers(-2, 5), min_size=1, max_size=6),
       st.sampled_from([1, 2, 0, -1, 2.5, "8", None]))
def test_fit_any_labels_and_batch_size(model, data, n, labels, batch_size):
    x = data.draw(arrays((n, 6, 6, 2)))
    y = np.array(labels)
    try:
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    except (ValueError, TypeError, cnnbp.NumericalError):
        pass
    assert np.isfinite(model.evaluate(np.zeros((2, 6, 6, 2)), np.array([0, 1]), verbose=0)[0])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_load_model_random_bytes(tmp_path_factory, blob):
    p = tmp_path_factory.mktemp("fz") / "m.cnnbp"
    p.write_bytes(blob)
    with pytest.raises(ValueError):
        cnnbp.load_model(p)


@SETTINGS
@given(st.one_of(st.integers(-3, 0), st.floats(allow_nan=True), st.text(max_size=3), st.none(),
                 st.tuples(st.integers(-2, 3), st.integers(-2, 3))),
       st.sampled_from(["filters", "kernel_size", "strides", "dilation_rate", "padding", "units", "rate", "pool"]))
def test_layer_constructors_reject_bad_arguments_cleanly(value, which):
    from cnnbp.layers import Dropout
    try:
        if which == "units":
            Dense(value)
        elif which == "rate":
            Dropout(value)
        elif which == "pool":
            MaxPooling2D(value)
        elif which == "filters":
            Conv2D(value, 3)
        else:
            Conv2D(2, 3, **{which: value})
    except (ValueError, TypeError):
        pass


@SETTINGS
@given(st.data(), st.integers(0, 5), st.integers(1, 9), st.integers(1, 9),
       st.sampled_from(["linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"]))
def test_dense_activation_and_loss_ops_any_input(data, n, i, o, kind):
    x = data.draw(arrays((n, i)))
    w = data.draw(arrays((i, o)))
    y = same_or_clean_error(ops.dense, x, w)
    if y is not None:
        x32 = np.ascontiguousarray(x, dtype=np.float32) if x.dtype != np.float64 else x
        w32 = np.ascontiguousarray(w, dtype=np.float32) if w.dtype != np.float64 else w
        assert np.array_equal(y, ops.dense(x32, w32), equal_nan=True)
    a = same_or_clean_error(ops.activation, x, kind)
    if a is not None:
        x32 = np.ascontiguousarray(x, dtype=np.float32) if x.dtype != np.float64 else x
        assert np.array_equal(a, ops.activation(x32, kind), equal_nan=True)
    t = data.draw(arrays((n, i)))
    kind_loss = data.draw(st.sampled_from(["mean_squared_error", "categorical_crossentropy_from_logits",
                                           "binary_crossentropy_from_logits", "sparse_categorical_crossentropy"]))
    same_or_clean_error(ops.loss, x, t if not kind_loss.startswith("sparse") else t[:, 0], kind_loss)


@SETTINGS
@given(st.one_of(st.sampled_from(["adam", "sgd", "adamw", "rmsprop", "", None, 3]),
                 st.builds(cnnbp.optimizers.SGD, st.floats(0, 1), st.floats(0, 1))),
       st.one_of(st.sampled_from(["mse", "categorical_crossentropy", "hinge", None, 1.5]),
                 st.builds(cnnbp.losses.CategoricalCrossentropy, st.booleans())),
       st.one_of(st.none(), st.lists(st.sampled_from(["accuracy", "acc", "auc", 3]), max_size=2)))
def test_compile_any_arguments_then_evaluate(model, optimizer, loss, metrics):
    try:
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    except (ValueError, TypeError):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return
    x = np.random.default_rng(0).random((4, 6, 6, 2), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    try:
        out = model.evaluate(x, y if not model.loss.sparse else np.array([0, 1, 2, 0]), verbose=0)
        assert np.all(np.isfinite(out))
    except (ValueError, TypeError):
        pass
    finally:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])


_OPS = [n for n in ops.__all__ if n not in ("sgd_update", "adam_update")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(_OPS), st.integers(1, 4))
def test_every_op_with_random_arguments_returns_or_raises_cleanly(data, name, nargs):
    """Any op, any number of random arrays (random ranks, sizes, dtypes, layouts) as arguments."""
    shape = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)
    args = [data.draw(arrays(data.draw(shape))) for _ in range(nargs)]
    try:
        getattr(ops, name)(*args)
    except (ValueError, TypeError, IndexError):
        pass
    p = np.zeros(4, np.float32)
    for fn, a in ((ops.sgd_update, (p, data.draw(arrays((data.draw(st.integers(0, 5)),))), np.zeros(4, np.float32), 0.1)),
                  (ops.adam_update, (p, np.ones(4, np.float32), np.zeros(3, np.float32), np.zeros(4, np.float32), 1))):
        try:
            fn(*a)
        except (ValueError, TypeError, IndexError):
            pass
    assert ops.dense(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)).sum() == 12  # still works


# ---- huge and adversarial sizes ------------------------------------------------------------------
# Sizes where 32- and 64-bit arithmetic breaks, beside small ones.
EDGES = [0, 1, 2, 3, -1, 2**15, 2**16 + 1, 46341, 2**24 + 3, 2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**63 - 1, 2**63,
         -(2**31)]
sizes = st.one_of(st.integers(1, 6), st.sampled_from(EDGES))
conv_sizes = st.one_of(st.integers(1, 3), st.sampled_from([2**16 + 1, 2**20, 2**24 + 3, 2**30, 2**31 - 1]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2), st.integers(1, 6), st.integers(1, 6), st.integers(1, 3), st.integers(1, 3),
       st.tuples(conv_sizes, conv_sizes), st.tuples(conv_sizes, conv_sizes),
       st.tuples(st.tuples(st.one_of(st.integers(0, 3), conv_sizes), st.one_of(st.integers(0, 3), conv_sizes)),
                 st.tuples(st.integers(0, 3), st.one_of(st.integers(0, 3), conv_sizes))),
       st.sampled_from(["baseline", "avx2", "avx512"]), st.integers(0, 2**32 - 1))
def test_conv2d_huge_strides_dilations_and_paddings(n, h, w, ks, k, strides, dilation, pads, isa, seed):
    """Strides, dilations and paddings up to 2**31 - 1 on small images: every pass either raises a
    clean ValueError or equals the gather reference (which never pads), on every kernel path."""
    import reference as ref
    if isa not in cnnbp._core.compiled_capabilities() or (isa == "avx512" and cnnbp._core.detected_capability() != "avx512") \
            or (isa == "avx2" and cnnbp._core.detected_capability() == "baseline"):
        isa = "baseline"
    (pt, pb), (pl, pr) = pads
    P = ref.out_size(h, ks, strides[0], dilation[0], pt, pb)
    Q = ref.out_size(w, ks, strides[1], dilation[1], pl, pr)
    if 0 < P * Q * k * max(n, 1) > 20000:
        event("skipped: output too large")
        return  # valid, but its output alone is hundreds of megabytes
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, 2)).astype(np.float32)
    wt = rng.standard_normal((ks, ks, 2, k)).astype(np.float32)
    kw = dict(strides=strides, padding=pads, dilation_rate=dilation, isa=isa)
    try:
        y = ops.conv2d(x, wt, **kw)
    except ValueError:
        assert P <= 0 or Q <= 0 or max(h + pt + pb, w + pl + pr) > 2**31 - 1
        event("refused")
        return
    event("computed")
    ref.assert_close(y, ref.conv2d(x, wt, None, strides, pads, dilation), 1e-5, "forward")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx_ref, dw_ref, _ = ref.conv2d_backward(dy, x, wt, strides, pads, dilation)
    ref.assert_close(ops.conv2d_backward_data(dy, wt, (h, w), **kw), dx_ref, 1e-5, "dx")
    ref.assert_close(ops.conv2d_backward_weight(dy, x, (ks, ks), **kw), dw_ref, 1e-5, "dw")


def _huge_layer(draw):
    from cnnbp import layers as L
    kind = draw(st.sampled_from(["conv", "dense", "pool", "pad", "crop", "bn", "flatten", "gap", "concat"]))
    s = lambda: draw(sizes)  # noqa: E731
    if kind == "conv":
        return L.Conv2D(s(), (s(), s()), strides=s(), dilation_rate=s() if draw(st.booleans()) else 1,
                        padding=draw(st.sampled_from(["valid", "same"])))
    if kind == "dense":
        return L.Dense(s())
    if kind == "pool":
        return L.MaxPooling2D(s(), strides=s(), padding=draw(st.sampled_from(["valid", "same"])))
    if kind == "pad":
        return L.ZeroPadding2D(((s(), s()), (s(), s())))
    if kind == "crop":
        return L.Cropping2D(((s(), s()), (s(), s())))
    if kind == "bn":
        return L.BatchNormalization()
    if kind == "gap":
        return L.GlobalAveragePooling2D()
    if kind == "concat":
        return "concat"
    return L.Flatten()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.lists(sizes, min_size=1, max_size=3), st.integers(1, 3))
def test_models_of_huge_sizes_build_or_refuse_cleanly(data, shape, depth):
    """Models whose sizes sit on the edges of 32- and 64-bit arithmetic (shapes, filters, units,
    kernels, strides, dilations, paddings, croppings, pool sizes, fan-out into Concatenate): built,
    counted and summarised, each either works or raises ValueError/TypeError/MemoryError (under a
    256 MiB memory budget: nothing large is allocated); the interpreter survives every case."""
    import io
    import os
    from cnnbp import layers as L
    old = os.environ.get("CNNBP_MAX_MEMORY")
    os.environ["CNNBP_MAX_MEMORY"] = "256M"
    try:
        try:
            x = inp = L.Input(tuple(shape))
            for _ in range(depth):
                layer = data.draw(st.composite(lambda d: _huge_layer(d))())
                x = L.Concatenate()([x, x]) if layer == "concat" else layer(x)
            m = cnnbp.Model(inp, x)
            n = m.count_params()
            m.summary(print_fn=io.StringIO().write)
        except (ValueError, TypeError, MemoryError, OverflowError) as e:
            event(f"refused: {type(e).__name__}")
            return
        event("built")
        assert 0 <= n < 2**40
    finally:
        if old is None:
            del os.environ["CNNBP_MAX_MEMORY"]
        else:
            os.environ["CNNBP_MAX_MEMORY"] = old
