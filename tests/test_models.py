"""The Keras-style API: building, summary, weights as views, fit/evaluate/predict, callbacks,
stopping rules, determinism and threads."""

import io

import numpy as np
import pytest

import cnnbp
from cnnbp.callbacks import Callback, EarlyStopping, LossThreshold
from cnnbp.layers import (Activation, AveragePooling2D, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D,
                          Input, MaxPooling2D, ReLU)

import reference as ref


def seed_model(shape=(28, 28, 1), classes=10):
    x = Input(shape)
    y = Conv2D(32, (3, 3), activation="relu")(x)
    y = MaxPooling2D((2, 2))(y)
    y = Flatten()(y)
    y = Dense(classes, activation="softmax")(y)
    return cnnbp.Model(x, y)


def toy_data(n=256, seed=0):
    """Two classes that differ by the brightness of the left half: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = rng.uniform(0, 0.5, (n, 8, 8, 1)).astype(np.float32)
    x[labels == 1, :, :4] += 0.5
    return x, np.eye(2, dtype=np.float32)[labels], labels


def small_model(**kw):
    return cnnbp.Sequential([Input((8, 8, 1)), Conv2D(4, 3, activation="relu"), MaxPooling2D(),
                             Flatten(), Dense(2, activation="softmax")], **kw)


def test_summary_shapes_and_param_counts():
    m = seed_model()
    out = []
    m.summary(print_fn=out.append)
    text = out[0]
    assert "(None, 26, 26, 32)" in text and "(None, 13, 13, 32)" in text and "(None, 5408)" in text
    assert "Total params: 54,410" in text
    assert m.count_params() == 32 * 9 + 32 + 5408 * 10 + 10
    assert [l.name.split("_")[0] for l in m.layers] == ["conv2d", "max", "flatten", "dense"]
    assert m.output_shape == (None, 10)


def test_weights_are_views_in_keras_layout():
    m = seed_model()
    conv, dense = m.layers[0], m.layers[3]
    assert conv.kernel.shape == (3, 3, 1, 32) and conv.bias.shape == (32,)
    assert dense.kernel.shape == (5408, 10)
    ws = m.get_weights()
    assert [w.shape for w in ws] == [(3, 3, 1, 32), (32,), (5408, 10), (10,)]
    ws[1][:] = 0.5
    m.set_weights(ws)
    assert np.all(conv.bias == 0.5)
    conv.kernel[0, 0, 0, 0] = 3.0  # writes through to the C++ buffer
    assert m.get_weights()[0][0, 0, 0, 0] == 3.0
    # glorot_uniform limits for the conv kernel: sqrt(6 / (9 + 288))
    limit = np.sqrt(6 / (9 * 1 + 9 * 32))
    k = m.get_weights()[2]
    assert np.abs(k).max() <= np.sqrt(6 / (5408 + 10)) + 1e-7
    assert np.abs(ws[0]).max() <= limit + 1e-7


def test_predict_equals_numpy_forward_of_the_weights():
    m = cnnbp.Sequential([Input((9, 9, 2)), Conv2D(5, 3, padding="same", activation="relu"),
                          AveragePooling2D(), Conv2D(3, 2, activation="tanh"), Flatten(),
                          Dense(4, activation="softmax")])
    rng = np.random.default_rng(1)
    ws = [w + rng.normal(0, 0.1, w.shape).astype(np.float32) for w in m.get_weights()]
    m.set_weights(ws)
    x = rng.standard_normal((7, 9, 9, 2)).astype(np.float32)
    h = ref.activation(ref.conv2d(x, ws[0], ws[1], padding="same"), "relu")
    h = ref.avg_pool2d(h, (2, 2))
    h = ref.activation(ref.conv2d(h, ws[2], ws[3]), "tanh")
    y = ref.activation(ref.dense(h.reshape(7, -1), ws[4], ws[5]), "softmax")
    ref.assert_close(m.predict(x, batch_size=3), y, 1e-5)
    ref.assert_close(m(x), y, 1e-5)


def test_functional_and_sequential_build_the_same_network():
    cnnbp.set_seed(5)
    a = seed_model((12, 12, 1), 3)
    cnnbp.set_seed(5)
    b = cnnbp.Sequential([Conv2D(32, (3, 3), activation="relu", input_shape=(12, 12, 1)), MaxPooling2D((2, 2)),
                          Flatten(), Dense(3, activation="softmax")])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(wa, wb)


def test_sequential_builds_lazily_from_data():
    m = cnnbp.Sequential()
    m.add(Conv2D(2, 3))
    m.add(Flatten())
    m.add(Dense(2, activation="softmax"))
    m.compile(loss="categorical_crossentropy")
    x, y, _ = toy_data(16)
    m.fit(x, y, epochs=1, verbose=0)
    assert m.input_shape == (None, 8, 8, 1)


def test_fit_learns_and_history_has_keras_keys():
    cnnbp.set_seed(0)
    m = small_model()
    m.compile(optimizer=cnnbp.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    x, y, _ = toy_data(512)
    xv, yv, _ = toy_data(128, seed=1)
    h = m.fit(x, y, epochs=5, batch_size=32, validation_data=(xv, yv), verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(h.history["loss"]) == 5 and h.epoch == [0, 1, 2, 3, 4]
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert h.history["val_accuracy"][-1] > 0.95
    loss, acc = m.evaluate(xv, yv, verbose=0)
    assert abs(loss - h.history["val_loss"][-1]) < 1e-6 and acc == h.history["val_accuracy"][-1]
    assert m.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"] == acc
    pred = m.predict(xv)
    assert pred.shape == (128, 2) and np.allclose(pred.sum(axis=1), 1, atol=1e-5)
    assert np.mean(pred.argmax(1) == yv.argmax(1)) == acc


def test_fit_sparse_labels_uint8_input_and_validation_split():
    cnnbp.set_seed(1)
    m = small_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, _, labels = toy_data(200)
    xu8 = (x * 255).astype(np.uint8)  # converted, not rejected
    h = m.fit(xu8, labels.astype(np.int64), epochs=2, validation_split=0.25, verbose=0)
    assert "val_loss" in h.history
    assert m.network.loss == "sparse_categorical_crossentropy_from_logits"


def test_binary_crossentropy_with_sigmoid_output_is_fused_and_learns():
    cnnbp.set_seed(2)
    m = cnnbp.Sequential([Input((8, 8, 1)), Flatten(), Dense(8, activation="relu"), Dense(1, activation="sigmoid")])
    m.compile(optimizer=cnnbp.optimizers.Adam(0.02), loss="binary_crossentropy", metrics=["accuracy"])
    assert m.network.loss_fused
    x, _, labels = toy_data(512)
    h = m.fit(x, labels.astype(np.float32), epochs=8, verbose=0)
    assert h.history["accuracy"][-1] > 0.95


def test_mse_regression_learns_a_linear_map():
    cnnbp.set_seed(3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((256, 4)).astype(np.float32)
    w = rng.standard_normal((4, 2)).astype(np.float32)
    m = cnnbp.Sequential([Input((4,)), Dense(2)])
    m.compile(optimizer=cnnbp.optimizers.SGD(0.1), loss="mse")
    h = m.fit(x, x @ w, epochs=30, verbose=0)
    assert h.history["loss"][-1] < 1e-4


def test_loss_threshold_stops_training():
    cnnbp.set_seed(4)
    m = small_model()
    m.compile(optimizer=cnnbp.optimizers.Adam(0.01), loss="categorical_crossentropy")
    x, y, _ = toy_data(512)
    stop = LossThreshold(0.3)
    h = m.fit(x, y, epochs=100, verbose=0, callbacks=[stop])
    assert len(h.history["loss"]) < 100
    assert h.history["loss"][-1] <= 0.3 and all(v > 0.3 for v in h.history["loss"][:-1])
    assert stop.stopped_epoch == len(h.history["loss"]) - 1


def test_early_stopping_restores_best_weights():
    cnnbp.set_seed(5)
    m = small_model()
    m.compile(optimizer=cnnbp.optimizers.SGD(0.5), loss="categorical_crossentropy")
    x, y, _ = toy_data(64)
    xv, yv, _ = toy_data(64, seed=9)
    yv = yv[:, ::-1].copy()  # validation labels flipped: val_loss rises as training improves

    seen = []

    class Record(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((logs["val_loss"], self.model.get_weights()))

    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = m.fit(x, y, epochs=50, validation_data=(xv, yv), callbacks=[Record(), es], verbose=0)
    assert len(h.history["loss"]) < 50 and es.stopped_epoch > 0
    best = min(range(len(seen)), key=lambda i: seen[i][0])
    for a, b in zip(m.get_weights(), seen[best][1]):
        assert np.array_equal(a, b)


def test_stop_training_from_a_batch_callback():
    m = small_model()
    m.compile(loss="categorical_crossentropy")
    x, y, _ = toy_data(320)

    class StopAt3(Callback):
        def __init__(self):
            super().__init__()
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if batch == 2:
                self.model.stop_training = True

    cb = StopAt3()
    m.fit(x, y, epochs=3, batch_size=32, callbacks=[cb], verbose=0)
    assert cb.batches == 3


def test_same_seed_gives_identical_weights_after_training(threads):
    x, y, _ = toy_data(256)
    results = []
    for _ in range(2):
        cnnbp.set_seed(11)
        m = cnnbp.Sequential([Input((8, 8, 1)), Conv2D(8, 3, padding="same", activation="relu"), Dropout(0.3),
                              MaxPooling2D(), Flatten(), Dense(2, activation="softmax")])
        m.compile(optimizer="adam", loss="categorical_crossentropy")
        m.fit(x, y, epochs=2, batch_size=16, verbose=0)
        results.append(m.get_weights())
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_one_and_two_threads_agree():
    x, y, _ = toy_data(128)
    out = []
    for t in (1, 2):
        cnnbp.set_num_threads(t)
        cnnbp.set_seed(12)
        m = small_model()
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        m.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
        out.append(m.get_weights())
    for a, b in zip(*out):
        ref.assert_close(a, b, 1e-5)


def test_dropout_is_identity_at_inference_and_active_in_training():
    cnnbp.set_seed(13)
    m = cnnbp.Sequential([Input((50,)), Dropout(0.5), Dense(3)])
    m.compile(loss="mse")
    x = np.ones((4, 50), dtype=np.float32)
    w, b = m.get_weights()
    assert np.allclose(m.predict(x), x @ w + b, atol=1e-5)
    train_out = m.network.forward(x, training=True)
    assert not np.allclose(train_out, x @ w + b, atol=1e-3)


def test_channels_first_is_transposed_at_the_boundary():
    rng = np.random.default_rng(0)
    cnnbp.set_seed(14)
    a = cnnbp.Sequential([Input((8, 8, 3)), Conv2D(4, 3), MaxPooling2D(), Flatten(), Dense(2)])
    b = cnnbp.Sequential([Input((3, 8, 8)), Conv2D(4, 3, data_format="channels_first"),
                          MaxPooling2D(data_format="channels_first"), Flatten(), Dense(2)])
    b.set_weights(a.get_weights())
    x = rng.standard_normal((5, 8, 8, 3)).astype(np.float32)
    ref.assert_close(b.predict(x.transpose(0, 3, 1, 2)), a.predict(x), 1e-6)


def test_activation_relu_layers_and_global_pool():
    m = cnnbp.Sequential([Input((6, 6, 2)), Conv2D(3, 3), ReLU(), Activation("tanh"), GlobalAveragePooling2D(),
                          Dense(2, activation="softmax")])
    assert m.output_shape == (None, 2)
    # conv (the ReLU fused in), tanh, pooling, dense, softmax
    assert [i["kind"] for i in m.network.layer_info()] == ["Conv2D", "Activation", "GlobalAveragePooling2D", "Dense",
                                                           "Activation"]


def test_dense_acts_on_the_last_axis():
    m = cnnbp.Sequential([Input((3, 4)), Dense(5)])
    assert m.output_shape == (None, 3, 5)
    w, b = m.get_weights()
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    ref.assert_close(m.predict(x), x @ w + b, 1e-6)


def test_progress_output_one_line_per_epoch(capsys):
    m = small_model()
    m.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    x, y, _ = toy_data(64)
    m.fit(x, y, epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert out.count("img/s") == 2 and "accuracy:" in out


def test_train_on_batch_and_initializers():
    cnnbp.set_seed(15)
    m = cnnbp.Sequential([Input((10,)), Dense(200, kernel_initializer="he_normal", bias_initializer="ones"),
                          Dense(3, kernel_initializer="zeros")])
    w0, b0, w1, b1 = m.get_weights()
    assert np.all(b0 == 1) and np.all(w1 == 0)
    assert abs(w0.std() - np.sqrt(2 / 10)) < 0.03 and np.abs(w0).max() <= 2 * np.sqrt(2 / 10) / 0.8796 + 1e-6
    m.compile(optimizer="sgd", loss="mse")
    loss = m.train_on_batch(np.ones((4, 10)), np.zeros((4, 3)))
    assert np.isfinite(loss)


def test_show_config_reports_path_and_threads():
    buf = io.StringIO()
    cnnbp.show_config(file=buf)
    text = buf.getvalue()
    assert cnnbp.cpu_capability() in text and "threads" in text
    pool = cnnbp._core.build_info()["threads"]
    assert ("thread pool:        cnnbp's own" if pool else "kernels run on the calling thread") in text
    cnnbp.set_num_threads(1)
    assert cnnbp.get_num_threads() == 1


def test_steady_state_training_step_allocates_no_buffers():
    from cnnbp import _core
    m = cnnbp.Sequential([Input((12, 12, 3)), Conv2D(8, 3, padding="same", activation="relu"), MaxPooling2D(),
                          Dropout(0.1), Flatten(), Dense(4, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((32, 12, 12, 3), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 32)]
    net = m.network
    net.train_step(x, y)  # plans the buffers for batch 32
    before = _core._buffer_allocations()
    for _ in range(10):
        net.train_step(x, y)
    net.train_step(x[:20], y[:20])  # a smaller last batch reuses the same buffers
    net.predict(x)
    assert _core._buffer_allocations() == before


def test_live_progress_bar_on_a_terminal():
    import io as _io
    from cnnbp._progress import Progress

    class Tty(_io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    bar = Progress(total_steps=4, total_samples=128, verbose=1, stream=out)
    for step in range(1, 5):
        bar.last_draw = 0.0  # draw every update
        bar.update(step, step * 32, {"loss": 1.0 / step, "accuracy": 0.5})
    bar.finish({"loss": 0.25, "accuracy": 0.5})
    text = out.getvalue()
    assert text.count("\r") >= 4 and "ETA" in text and "img/s" in text and "[" in text
    assert text.endswith("loss: 0.2500 - accuracy: 0.5000\n")


# ---- Keras habits ---------------------------------------------------------------------------------
def test_sequential_with_an_input_is_built_at_construction_and_after_each_add():
    from cnnbp.layers import Dense, Input
    m = cnnbp.Sequential([Input((4,)), Dense(3)])
    assert [w.shape for w in m.layers[0].get_weights()] == [(4, 3), (3,)]
    m.layers[0].set_weights([np.full((4, 3), 0.5), np.arange(3.0)])
    head = Dense(2, activation="softmax")
    m.add(head)                                    # built again; the first layer keeps its weights
    assert np.all(m.layers[0].get_weights()[0] == 0.5) and m.output_shape == (None, 2)
    assert [w.shape for w in head.get_weights()] == [(3, 2), (2,)]
    assert m.pop() is head and head.get_weights() == []
    assert m.output_shape == (None, 3) and np.all(m.layers[0].get_weights()[0] == 0.5)
    # built incrementally, one add at a time, from Input or input_shape=
    s = cnnbp.Sequential()
    s.add(Input((5,)))
    s.add(Dense(2))
    assert s.layers[0].get_weights()[0].shape == (5, 2)
    t = cnnbp.Sequential([Dense(2, input_shape=(6,))])
    assert t.layers[0].get_weights()[0].shape == (6, 2)


def test_sequential_add_that_does_not_fit_is_undone():
    from cnnbp.layers import Conv2D, Dense, Input
    m = cnnbp.Sequential([Input((4,)), Dense(3)])
    w = m.layers[0].get_weights()
    with pytest.raises(ValueError):
        m.add(Conv2D(2, 3))                        # a 2-D convolution on a vector
    assert len(m.layers) == 1 and m.output_shape == (None, 3)
    assert all(np.array_equal(a, b) for a, b in zip(w, m.layers[0].get_weights()))


def test_sequential_add_after_compile_keeps_training():
    from cnnbp.layers import Dense, Input
    m = cnnbp.Sequential([Input((4,)), Dense(3, activation="relu")])
    m.compile(optimizer="adam", loss="mse", metrics=["mae"])
    m.add(Dense(1))
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    h = m.fit(x, x[:, :1], epochs=2, verbose=0)
    assert list(h.history) == ["loss", "mae"]


def test_keras_top_level_names():
    from cnnbp import layers as L
    x = cnnbp.Input((4,))
    a, b = L.Dense(3)(x), L.Dense(3)(x)
    y = L.concatenate([L.add([a, b]), L.subtract([a, b]), L.multiply([a, b]), L.average([a, b]),
                       L.maximum([a, b])])
    m = cnnbp.Model(x, y)
    assert m.output_shape == (None, 15)
    assert [type(l).__name__ for l in m.layers[2:]] == ["Add", "Subtract", "Multiply", "Average", "Maximum",
                                                        "Concatenate"]
    assert m.inputs[0].shape == (None, 4) and m.outputs[0].shape == (None, 15) and m.input is m.inputs[0]
    assert cnnbp.models.load_model is not None


def test_a_symbolic_tensor_used_as_a_model_says_to_wrap_it():
    from cnnbp.layers import Dense
    x = cnnbp.Input((4,))
    y = Dense(2)(x)
    for method in ("compile", "fit", "predict", "summary"):
        with pytest.raises(AttributeError, match=r"symbolic tensor.*cnnbp\.Model\(inputs, outputs\)"):
            getattr(y, method)
    with pytest.raises(AttributeError, match="no attribute 'foo'"):
        y.foo


def test_get_config_from_config_and_to_json():
    from cnnbp.layers import Conv2D, Dense, Flatten, Input
    m = cnnbp.Sequential([Input((6, 6, 1)), Conv2D(2, 3), Flatten(), Dense(3)])
    cfg = m.get_config()
    again = cnnbp.Sequential.from_config(cfg)
    assert again.get_config() == cfg and again.count_params() == m.count_params()
    assert cnnbp.io.model_from_json(m.to_json()).get_config() == cfg


def test_predict_progress_bar_by_default(capsys):
    from cnnbp.layers import Dense, Input
    m = cnnbp.Sequential([Input((3,)), Dense(2)])
    x = np.zeros((70, 3), np.float32)
    m.predict(x, batch_size=32)
    out = capsys.readouterr().out
    assert out.startswith("3/3 - ") and "img/s" in out and out.rstrip().endswith("img/s")
    m.predict(x, verbose=0)
    m(x)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbose"):
        m.predict(x, verbose=3)


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "m.weights.h5"])
def test_saving_under_a_keras_suffix_warns_and_still_loads(tmp_path, name):
    from cnnbp.layers import Dense, Input
    m = cnnbp.Sequential([Input((3,)), Dense(2)])
    with pytest.warns(UserWarning, match="cnnbp's own format"):
        m.save(tmp_path / name)
    assert np.array_equal(cnnbp.load_model(tmp_path / name).layers[0].get_weights()[0], m.layers[0].get_weights()[0])
    with pytest.warns(UserWarning, match="cnnbp's own format"):
        m.save_weights(tmp_path / ("w" + name))


# ---- a model used as a layer (transfer learning) ----------------------------------------------------
def _base(name="base"):
    from cnnbp.layers import Conv2D, Flatten, Input, MaxPooling2D
    return cnnbp.Sequential([Input((8, 8, 1)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2), Flatten()],
                            name=name)


def test_a_frozen_base_inside_a_new_classifier(tmp_path):
    from cnnbp.layers import Dense
    cnnbp.set_seed(0)
    base = _base()
    w0 = [w.copy() for w in base.layers[0].get_weights()]
    base.trainable = False
    inp = cnnbp.Input((8, 8, 1))
    out = Dense(3, activation="softmax")(base(inp, training=False))
    model = cnnbp.Model(inp, out)
    assert model.get_layer("base") is base and len(model.layers) == 4
    assert all(np.array_equal(a, b) for a, b in zip(model.layers[0].get_weights(), w0))   # weights came along
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 8, 8, 1)).astype(np.float32), np.arange(32) % 3
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    head0 = model.layers[-1].get_weights()[0].copy()
    model.fit(x, y, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(base.layers[0].get_weights(), w0))   # frozen
    assert not np.array_equal(model.layers[-1].get_weights()[0], head0)                  # the head trains
    assert model.count_params() - sum(w.size for w in model.trainable_weights) == sum(w.size for w in w0)
    base.trainable = True                                                                # fine-tune
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(base.layers[0].get_weights()[0], w0[0])
    with pytest.raises(ValueError, match="is a layer of another model now"):
        base.predict(x)
    model.save(tmp_path / "m.cnnbp")
    assert np.allclose(cnnbp.load_model(tmp_path / "m.cnnbp").predict(x, verbose=0), model.predict(x, verbose=0))


def test_models_inside_a_sequential_keep_their_graph_and_weights(tmp_path):
    from cnnbp import layers as L
    cnnbp.set_seed(1)
    i = cnnbp.Input((6,))
    branchy = cnnbp.Model(i, L.add([L.Dense(4)(i), L.Dense(4, activation="tanh")(i)]), name="branchy")
    x = np.random.default_rng(2).standard_normal((5, 6)).astype(np.float32)
    before = branchy.predict(x, verbose=0)
    seq = cnnbp.Sequential([branchy, L.Dense(1)])
    assert seq.output_shape == (None, 1)
    h = seq.layers[2]   # the Add layer, reading both branches
    assert seq._inbound[h.name] == [seq.layers[0].name, seq.layers[1].name]
    w = seq.layers[-1].get_weights()
    assert np.allclose(seq.predict(x, verbose=0), before @ w[0] + w[1], atol=1e-5)
    seq.save(tmp_path / "s.cnnbp")   # saved as the graph it is
    assert np.allclose(cnnbp.load_model(tmp_path / "s.cnnbp").predict(x, verbose=0), seq.predict(x, verbose=0))
    base = _base("b2")
    s2 = cnnbp.Sequential()
    s2.add(base)
    s2.add(L.Dense(2))
    assert s2.output_shape == (None, 2) and s2.get_layer("b2") is base


def test_a_model_is_a_layer_of_one_model_only():
    from cnnbp.layers import Dense
    base = _base()
    a = cnnbp.Input((8, 8, 1))
    base(a)
    with pytest.raises(ValueError, match="already a layer of another model"):
        base(cnnbp.Input((8, 8, 1)))
    with pytest.raises(ValueError, match="expected an input of shape"):
        _base("b3")(cnnbp.Input((9, 9, 1)))
    with pytest.raises(ValueError, match="cannot contain itself"):
        s = cnnbp.Sequential([cnnbp.Input((3,)), Dense(2)])
        s.add(s)


def test_sample_and_class_weights(rng):
    """Keras's weighting: loss = sum_i w_i loss_i / N; class_weight multiplies by the weight of
    each sample's class; the step's gradient is that of the weighted loss (float64)."""
    def build():
        cnnbp.set_seed(9)
        i = cnnbp.Input((4,))
        m = cnnbp.Model(i, Dense(3, activation="softmax")(i), dtype="float64")
        m.compile(optimizer=cnnbp.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        return m
    x, y = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    w = rng.uniform(0, 2, 10)
    m = build()
    p = m.predict(x, verbose=0)
    per = -np.log(p[np.arange(10), y])
    assert abs(m.evaluate(x, y, sample_weight=w, verbose=0)[0] - np.sum(w * per) / 10) < 1e-12
    cw = {0: 2.0, 2: 0.5}
    table = np.array([2.0, 1.0, 0.5])
    assert abs(m.test_on_batch(x, y, sample_weight=w)[0] - np.sum(w * per) / 10) < 1e-12
    # a weighted step equals a step on the weighted loss: duplicating a sample = weight 2
    a, b = build(), build()
    a.train_on_batch(x, y, class_weight=cw)
    xd = np.concatenate([x, x[y == 0]])
    yd = np.concatenate([y, y[y == 0]])
    wd = np.concatenate([np.where(y == 2, 0.5, 1.0), np.ones((y == 0).sum())])
    b.train_on_batch(xd, yd, sample_weight=wd * len(xd) / len(x))
    assert all(np.allclose(u, v, atol=1e-12, rtol=0) for u, v in zip(a.get_weights(), b.get_weights()))
    # fit: sample_weight and class_weight together, shuffled and split like x
    c, d = build(), build()
    c.fit(x, y, batch_size=4, epochs=2, sample_weight=w, class_weight=cw, verbose=0, seed=1)
    d.fit(x, y, batch_size=4, epochs=2, sample_weight=w * table[y], verbose=0, seed=1)
    assert all(np.array_equal(u, v) for u, v in zip(c.get_weights(), d.get_weights()))
    h = c.fit(x, y, epochs=1, sample_weight=w, validation_split=0.3, verbose=0)
    assert "val_loss" in h.history
    with pytest.raises(ValueError, match="one weight per sample"):
        c.fit(x, y, sample_weight=w[:5], verbose=0)
    with pytest.raises(ValueError, match="class_weight keys"):
        c.fit(x, y, class_weight={7: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="finite and >= 0"):
        c.evaluate(x, y, sample_weight=-w, verbose=0)
