"""One test per bad-input case: each raises a Python exception whose message names the layer or
argument and the expected and actual values; none crashes the interpreter."""

import numpy as np
import pytest

import cnnbp
from cnnbp.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D


def model(loss="categorical_crossentropy"):
    m = cnnbp.Sequential([Input((8, 8, 1)), Conv2D(2, 3, activation="relu", name="c1"), MaxPooling2D(),
                          Flatten(), Dense(3, activation="softmax", name="out")])
    m.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return m


X = np.zeros((4, 8, 8, 1), np.float32)
Y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"expected input of shape \(None, 8, 8, 1\), got \(4, 8, 8\)"):
        model().fit(np.zeros((4, 8, 8)), Y, verbose=0)


def test_wrong_spatial_shape():
    with pytest.raises(ValueError, match=r"expected input of shape \(None, 8, 8, 1\), got \(4, 9, 8, 1\)"):
        model().predict(np.zeros((4, 9, 8, 1)))


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"\(None, 8, 8, 1\), got \(4, 8, 8, 3\)"):
        model().evaluate(np.zeros((4, 8, 8, 3)), Y, verbose=0)


def test_single_sample_without_batch_axis_hints():
    m = cnnbp.Sequential([Input((8,)), Dense(2)])
    with pytest.raises(ValueError, match="add a batch axis"):
        m.predict(np.zeros(8))


def test_layer_input_rank_error_names_the_layer():
    with pytest.raises(ValueError, match=r"c9 \(Conv2D\): expected input of rank 3 .* got shape \(None, 10\)"):
        cnnbp.Sequential([Input((10,)), Conv2D(2, 3, name="c9")]).summary()


def test_kernel_larger_than_input_names_the_layer():
    with pytest.raises(ValueError, match=r"big \(Conv2D\): kernel 5x5 .* does not fit"):
        cnnbp.Sequential([Input((4, 4, 1)), Conv2D(2, 5, name="big")]).summary()


def test_pool_larger_than_input():
    with pytest.raises(ValueError, match="MaxPooling2D.*does not fit"):
        cnnbp.Sequential([Input((1, 1, 1)), MaxPooling2D()]).summary()


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\), found 3"):
        model("sparse_categorical_crossentropy").fit(X, np.array([0, 1, 2, 3]), verbose=0)


def test_labels_out_of_range_reach_cpp_check_too():
    m = model("sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"integer class labels in \[0, 3\), got -1"):
        m.network.train_step(X, np.array([0, 1, -1, 0], np.float32))
    with pytest.raises(ValueError, match=r"got 1.5"):
        m.network.train_step(X, np.array([0, 1, 1.5, 0], np.float32))


def test_integer_labels_with_categorical_loss_hint():
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy.*to_categorical"):
        model().fit(X, np.array([0, 1, 2, 0]), verbose=0)


def test_wrong_target_width():
    with pytest.raises(ValueError, match=r"expected targets of shape \(None, 3\).*got \(4, 4\)"):
        model().fit(X, np.zeros((4, 4)), verbose=0)


@pytest.mark.parametrize("bs", [0, -1])
def test_batch_size_not_positive(bs):
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        model().fit(X, Y, batch_size=bs, verbose=0)


def test_batch_size_not_int():
    with pytest.raises(TypeError, match="batch_size"):
        model().fit(X, Y, batch_size=2.5, verbose=0)


def test_empty_arrays():
    with pytest.raises(ValueError, match="at least one sample"):
        model().fit(np.zeros((0, 8, 8, 1)), np.zeros((0, 3)), verbose=0)


@pytest.mark.parametrize("x", [np.array([["a"] * 64] * 4).reshape(4, 8, 8, 1), np.empty((4, 8, 8, 1), dtype=object)])
def test_non_numeric_dtypes(x):
    with pytest.raises(TypeError, match="expected a numeric array"):
        model().fit(x, Y, verbose=0)


def test_x_and_y_lengths_differ():
    with pytest.raises(ValueError, match="x has 4 samples but y has 3"):
        model().fit(X, Y[:3], verbose=0)


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss 'hingee'"):
        model().compile(loss="hingee")


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprops'"):
        model().compile(optimizer="rmsprops", loss="mse")


def test_unknown_activation_names_the_layer():
    with pytest.raises(ValueError, match="d7: unknown activation 'swishy'"):
        Dense(3, activation="swishy", name="d7")


def test_unknown_padding_names_the_layer():
    with pytest.raises(ValueError, match="c3: padding must be 'valid' or 'same'.*got 'full'"):
        Conv2D(2, 3, padding="full", name="c3")


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric 'aucc'"):
        model().compile(loss="mse", metrics=["aucc"])


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="filters must be positive"):
        Conv2D(0, 3)
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        Conv2D(2, 0)
    with pytest.raises(ValueError, match="strides must be positive"):
        Conv2D(2, 3, strides=(1, -1))
    with pytest.raises(ValueError, match="units must be positive"):
        Dense(-3)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="unknown kernel_initializer"):
        Dense(3, kernel_initializer="orthogonal")
    with pytest.raises(TypeError, match="unexpected keyword"):
        Dense(3, activations="relu")


def test_not_compiled():
    m = cnnbp.Sequential([Input((4,)), Dense(2)])
    with pytest.raises(RuntimeError, match="compile"):
        m.fit(np.zeros((2, 4)), np.zeros((2, 2)), verbose=0)
    with pytest.raises(ValueError, match="not compiled"):
        m.network.train_step(np.zeros((2, 4), np.float32), np.zeros((2, 2), np.float32))


def test_float64_and_uint8_inputs_are_converted():
    m = model()
    m.fit(X.astype(np.float64), Y.astype(np.float64), verbose=0)
    m.fit((X * 255).astype(np.uint8), Y.astype(np.uint8), verbose=0)
    m.predict(np.asfortranarray(X.astype(np.float64))[:, ::-1])


def test_nan_loss_raises_numerical_error_and_keeps_weights():
    m = model()
    before = m.get_weights()
    x = X.copy()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(cnnbp.NumericalError, match=r"epoch 1, batch 1: loss is nan at step 1"):
        m.fit(x, Y, verbose=0)
    for a, b in zip(before, m.get_weights()):
        assert np.array_equal(a, b)
    m.fit(X, Y, verbose=0)  # the model still trains afterwards


def test_inf_loss_raises_numerical_error():
    m = cnnbp.Sequential([Input((2,)), Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    with pytest.raises(cnnbp.NumericalError, match="loss is inf"):
        m.fit(np.ones((2, 2)), np.full((2, 1), np.inf), verbose=0)


def test_list_into_single_input_layer_is_rejected():
    x = Input((4,))
    a = Dense(2)(x)
    with pytest.raises(ValueError, match="takes a single tensor, got a list of 2"):
        Dense(2)([a, a])


def test_functional_outputs_not_from_inputs():
    x1, x2 = Input((4,)), Input((4,))
    with pytest.raises(ValueError, match="not computed from the given inputs"):
        cnnbp.Model(x1, Dense(2)(x2))


def test_layer_reused_in_two_models():
    d = Dense(2)
    cnnbp.Sequential([Input((3,)), d]).summary()
    with pytest.raises(ValueError, match="one model"):
        cnnbp.Sequential([Input((3,)), d]).summary()


def test_set_weights_wrong_shape_names_the_layer():
    m = model()
    ws = m.get_weights()
    ws[0] = np.zeros((2, 2, 1, 2))
    with pytest.raises(ValueError, match=r"c1: expected kernel of shape \(3, 3, 1, 2\), got \(2, 2, 1, 2\)"):
        m.set_weights(ws)
    with pytest.raises(ValueError, match="expected 4 weight arrays, got 3"):
        m.set_weights(ws[:3])


def test_bad_input_shape_spec():
    with pytest.raises(ValueError, match="shape must be positive"):
        Input((0, 3))
    with pytest.raises(ValueError, match="batch axis is not part"):
        Input((None, 3))


def test_ops_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"conv2d: expected x of rank 4"):
        cnnbp.ops.conv2d(np.zeros((3, 3)), np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="conv2d: expected kernel with 2 input channels"):
        cnnbp.ops.conv2d(np.zeros((1, 3, 3, 2)), np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="dense: expected kernel with 4 rows"):
        cnnbp.ops.dense(np.zeros((2, 4)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="isa"):
        cnnbp.ops.dense(np.zeros((2, 4)), np.zeros((4, 2)), isa="sse9")
    with pytest.raises(ValueError, match="loss: unknown kind"):
        cnnbp.ops.loss(np.zeros((2, 2)), np.zeros((2, 2)), "hinge_loss")


def test_set_num_threads_rejects_bad_values():
    with pytest.raises(ValueError, match="positive thread count"):
        cnnbp.set_num_threads(0)
    with pytest.raises(TypeError):
        cnnbp.set_num_threads("2")


def test_network_backward_before_forward():
    m = cnnbp.Sequential([Input((4,)), Dense(2)])
    m.compile(loss="mse")
    with pytest.raises(ValueError, match="call forward first"):
        m.network.backward(np.zeros((1, 2), np.float32))


def test_backward_after_predict_is_refused_not_a_use_after_free():
    m = model()
    net = m.network
    m.predict(X)  # reads the caller's array in place: nothing is kept for backward
    with pytest.raises(ValueError, match="call forward"):
        net.backward(Y)
    m.fit(X, Y, verbose=0)
    with pytest.raises(ValueError, match="call forward"):
        net.backward_from_output(np.zeros((4, 3), np.float32))
    net.forward(X)
    net.backward(Y)  # fine after forward


def test_check_numerics_names_the_first_bad_layer():
    m = cnnbp.Sequential([Input((4,)), Dense(3, name="ok1"), Dense(3, name="blows_up"), Dense(2, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy", check_numerics=True)
    ws = m.get_weights()
    ws[0][:] = 1.0  # ok1 outputs 4 for an input of ones
    ws[2][:] = 3e38  # so the second layer's output overflows to inf
    m.set_weights(ws)
    before = m.get_weights()
    x = np.ones((2, 4), np.float32)
    y = np.eye(2, dtype=np.float32)
    with pytest.raises(cnnbp.NumericalError, match=r"epoch 1, batch 1: layer 'blows_up' \(Dense\) produced a non-finite output"):
        m.fit(x, y, verbose=0)
    for a, b in zip(before, m.get_weights()):
        assert np.array_equal(a, b)
    m.compile(optimizer="sgd", loss="categorical_crossentropy")  # default: only the loss is checked
    with pytest.raises(cnnbp.NumericalError, match=r"loss is nan"):
        m.fit(x, y, verbose=0)


# Sizes that overflowed 32-bit (or 64-bit) arithmetic, or asked for more memory than the machine
# has: each ran in a fresh interpreter, which crashed (SIGFPE, SIGSEGV) or was killed by the OOM
# killer. Each now raises (exception type, words of its message).
_HUGE = [
    ("Sequential([Input((65536, 65536, 1)), Flatten(), Dense(5)]).count_params()",
     "ValueError", "4294967296 elements per sample"),
    ("Sequential([Input((2147483647, 6, 3)), Flatten(), Dense(5), Dense(2)]).count_params()",
     "ValueError", "38654705646 elements per sample"),
    ("Sequential([Input((4,)), Dense(2**30)]).count_params()", "MemoryError", "weights and their gradients"),
    ("Sequential([Input((1, 1, 2**31 - 1)), Conv2D(2, 1)]).count_params()", "MemoryError",
     "weights and their gradients"),
    ("Sequential([Input((8, 8, 1)), Conv2D(2, 3, dilation_rate=2**30, padding='same')]).count_params()",
     "ValueError", "kernel reach 2147483649x2147483649"),
    ("Sequential([Input((100000,)), Dense(10**9)]).summary()", "ValueError", "100000 x 1000000000"),
    ("Sequential([Input((2**40, 1, 1)), Flatten(), Dense(2)]).count_params()", "ValueError", "2**31 - 1"),
    ("Sequential([Input((4,)), Dense(2**63)])", "ValueError", "at most 2**31 - 1"),
    ("Sequential([Input((2**20, 2**20, 3)), Conv2D(4, 3)]).count_params()", "ValueError", "elements per sample"),
    ("Sequential([Input((8, 8, 3)), Conv2D(4, 2**31)])", "ValueError", "at most 2**31 - 1"),
    ("Sequential([Input((8, 8, 3)), ZeroPadding2D(2**31 - 1)]).count_params()", "ValueError",
     "padded size 4294967302x4294967302"),
    ("Sequential([Input((8, 8, 3)), ZeroPadding2D(2**15)]).count_params()", "ValueError", "elements per sample"),
    ("Model(i := Input((4, 4, 2**30)), Concatenate()([i, i, i]))", "ValueError", "elements per sample"),
    # Found by tests/fuzz/fuzz_plan.cpp: the layer allocated 5 x 8 GiB of per-channel buffers in its
    # constructor, before any budget check (killed by the OOM killer).
    ("Sequential([Input((2**31 - 1,)), BatchNormalization()]).count_params()", "MemoryError",
     "weights and their gradients"),
]


def _run_snippet(code, limit_as=None):
    import resource
    import subprocess
    import sys

    def lower():
        if limit_as:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    prog = ("import numpy as np\nfrom cnnbp import Model, Sequential\nfrom cnnbp.layers import *\n"
            f"try:\n    {code}\nexcept (ValueError, MemoryError) as e:\n"
            "    print(('MemoryError' if isinstance(e, MemoryError) else 'ValueError') + ': ' + str(e))\n")
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120,
                          preexec_fn=lower)


@pytest.mark.parametrize("code,kind,words", _HUGE, ids=[c[:60] for c, _, _ in _HUGE])
def test_huge_sizes_are_clean_errors_not_crashes(code, kind, words):
    out = _run_snippet(code)
    assert out.returncode == 0, f"crashed with {out.returncode}: {out.stderr[-800:]}"
    assert out.stdout.startswith(kind + ":") and words in out.stdout, out.stdout + out.stderr[-800:]


def test_memory_budget_answers_before_allocating_under_rlimit_as():
    """Under a 2 GiB address-space limit, a batch whose plan needs 8 GiB is refused by the budget
    check (naming the batch and the largest tensor), not by a failed allocation."""
    import os
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("AddressSanitizer reserves terabytes of address space: no interpreter starts under RLIMIT_AS")
    code = ("m = Sequential([Input((64, 64, 8)), Conv2D(64, 3, padding='same'), Flatten(), Dense(10)]); "
            "m.compile(optimizer='sgd', loss='mse'); m.predict(np.zeros((4096, 64, 64, 8), np.float32), "
            "batch_size=4096, verbose=0)")
    out = _run_snippet(code, limit_as=2 << 30)
    assert out.returncode == 0, out.stderr[-800:]
    assert out.stdout.startswith("MemoryError: cnnbp: a batch of 4096") and "RLIMIT_AS" in out.stdout, out.stdout
    assert "the largest tensor: 'conv2d'" in out.stdout
    # A batch that fits runs under the same limit.
    ok = _run_snippet(code.replace("4096", "16"), limit_as=2 << 30)
    assert ok.returncode == 0 and ok.stdout == "", ok.stdout + ok.stderr[-800:]

def test_building_allocates_nothing_per_sample():
    """Found by tests/fuzz/fuzz_plan.cpp: building a model allocated, for every layer, two scratch
    vectors the size of its output's last axis (8 GiB for a Flatten of 2**30 values). A model with
    two weights and a 4 GiB sample builds and counts under a 1 GiB address-space limit."""
    import os
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("AddressSanitizer reserves terabytes of address space: no interpreter starts under RLIMIT_AS")
    out = _run_snippet("print(Sequential([Input((1, 2**30, 1)), Conv2D(1, 1), Flatten()]).count_params())",
                       limit_as=1 << 30)
    assert out.returncode == 0 and out.stdout == "2\n", out.stdout + out.stderr[-800:]


def test_memory_limit_environment_variable():
    """CNNBP_MAX_MEMORY caps the budget below what the machine has (bytes or K/M/G/T suffixes);
    show_config names it."""
    import subprocess
    import sys
    code = ("import cnnbp; from cnnbp.layers import *\ncnnbp.show_config()\n"
            "try:\n    cnnbp.Sequential([Input((4,)), Dense(2**24)]).count_params()\n"
            "except MemoryError as e:\n    print('MemoryError:', e)\n")
    env = dict(__import__("os").environ, CNNBP_MAX_MEMORY="64M")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-800:]
    assert "memory budget:      0.0625 GiB (CNNBP_MAX_MEMORY)" in out.stdout, out.stdout
    assert "MemoryError: cnnbp: the model's weights and their gradients would take 0.625 GiB" in out.stdout, out.stdout
    env["CNNBP_MAX_MEMORY"] = "1GiB"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "MemoryError" not in out.stdout, out.stdout + out.stderr[-800:]


@pytest.mark.parametrize("shape,kind", [([2147483647, 6, 3], "ValueError"), ([65536, 65536], "ValueError"),
                                        ([2**40, 3], "ValueError"), ([1, 2**31 - 1], "MemoryError")])
def test_model_file_with_a_huge_input_shape_is_a_clean_error(tmp_path, shape, kind):
    """A model file from someone else, its input_shape edited and every checksum recomputed: loading
    it is an exception, in a fresh interpreter that must survive it."""
    import json
    import zlib

    from cnnbp.io import _PRELUDE, MAGIC

    src, bad = tmp_path / "m.cnnbp", tmp_path / "bad.cnnbp"
    m = cnnbp.Sequential([Input((6, 3)), Flatten(), Dense(5), Dense(2)])
    cnnbp.io.save_model(m, src)
    data = src.read_bytes()
    _, version, hlen, _ = _PRELUDE.unpack_from(data)
    header = json.loads(data[_PRELUDE.size:_PRELUDE.size + hlen])
    header["model"]["input_shape"] = shape
    hbytes = json.dumps(header, sort_keys=True).encode()
    bad.write_bytes(_PRELUDE.pack(MAGIC, version, len(hbytes), zlib.crc32(hbytes)) + hbytes
                    + data[_PRELUDE.size + hlen:])
    out = _run_snippet(f"import cnnbp; cnnbp.io.load_model({str(bad)!r})")
    assert out.returncode == 0, f"crashed with {out.returncode}: {out.stderr[-800:]}"
    assert out.stdout.startswith(kind + ":"), out.stdout + out.stderr[-800:]
