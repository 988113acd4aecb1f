"""Graphs of layers: branches, fan-out, residual connections and merges train with exact gradients
(float64 finite differences over whole graphs), equal chains bit for bit, and refuse what they
cannot do with messages that name the layers."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import cnnbp
from cnnbp import _core
from cnnbp.layers import (Activation, Add, Average, BatchNormalization, Concatenate, Conv2D, Cropping2D, Dense,
                          AveragePooling2D, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Identity, Input,
                          Maximum, MaxPooling2D, Multiply, ReLU, Subtract, ZeroPadding2D)

import reference as ref
from conftest import ISAS, compiled_resnet


def _train_mode_loss(net, x, y):
    """The loss of a training-mode forward pass (batch statistics), with nothing updated."""
    net.forward(x, training=True)
    return net.backward(y)[0]


def _check_graph_gradients(model, x, y, tol=1e-6):
    """Every parameter's and the input's gradient equal central differences of the training-mode loss."""
    net = model.network
    net.forward(x, training=True)
    loss, _, dx = net.backward(y, input_grad=True)
    grads = np.array(net.flat_grads())
    num = ref.numerical_grad(lambda: _train_mode_loss(net, x, y), net.flat_params())
    assert ref.rel_error(grads, num) < tol
    num_x = ref.numerical_grad(lambda: _train_mode_loss(net, x, y), x)
    assert ref.rel_error(dx, num_x) < tol
    return loss


def _residual_block(x, filters, project, bn=False):
    y = Conv2D(filters, 3, padding="same", activation="tanh")(x)
    if bn:
        y = BatchNormalization()(y)
    y = Conv2D(filters, 3, padding="same")(y)
    sc = Conv2D(filters, 1, strides=1)(x) if project else x  # fan-out: x feeds the branch and the shortcut
    return Activation("tanh")(Add()([y, sc]))


@pytest.mark.parametrize("project", [False, True], ids=["identity", "projection"])
@pytest.mark.parametrize("bn", [False, True], ids=["plain", "bn"])
def test_residual_block_gradients_match_finite_differences(project, bn):
    cnnbp.set_seed(1)
    rng = np.random.default_rng(2)
    x_in = Input((5, 4, 3))
    y = _residual_block(x_in, 3, project, bn)
    y = Dense(3, activation="softmax")(Flatten()(y))
    model = cnnbp.Model(x_in, y, dtype="float64")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    _check_graph_gradients(model, rng.standard_normal((4, 5, 4, 3)), np.eye(3)[[0, 1, 2, 1]])


@pytest.mark.parametrize("project", [False, True], ids=["identity", "projection"])
@pytest.mark.parametrize("order", ["bn_first", "bn_second"])
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_batch_norm_run_inside_the_add_gradients_match_finite_differences(project, order, act):
    """A BatchNormalization that only an Add reads runs in the Add's node (Model._residual_fusions):
    y = act(bn(conv(t)) + shortcut), the shortcut either a projection computed after the branch
    (its own normalisation then an input of the pair) or the block input itself, which the
    branch's convolution reads too (two gradient contributions, summed)."""
    cnnbp.set_seed(4)
    rng = np.random.default_rng(7)
    x_in = Input((5, 4, 3))
    t = Conv2D(3, 3, padding="same", activation="tanh")(x_in)
    b = BatchNormalization()(Conv2D(3, 3, padding="same")(t))
    sc = BatchNormalization()(Conv2D(3, 1)(t)) if project else t
    y = Add()([b, sc] if order == "bn_first" else [sc, b])
    y = ReLU()(y) if act == "relu" else Activation("tanh")(y)
    model = cnnbp.Model(x_in, Dense(3, activation="softmax")(Flatten()(y)), dtype="float64")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert len(model._residual) == 1
    kinds = [n["kind"] for n in model.network.layer_info()]
    assert "Add" not in kinds and kinds.count("BatchNormalization") == 1 + project
    _check_graph_gradients(model, rng.standard_normal((4, 5, 4, 3)), np.eye(3)[[0, 1, 2, 1]])


def test_batch_norm_add_pairs_keep_the_layout_weights_and_training(monkeypatch):
    """Running a block's last BatchNormalization in the Add's node moves its node after the
    projection shortcut; the flat buffers keep the layer-per-node layout and initial draws (so
    optimizer state saved without the pairing loads with it), and training is the same to the bit."""
    rng = np.random.default_rng(4)
    x = rng.random((16, 12, 12, 3), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]

    def build():
        return compiled_resnet(14, (12, 12, 3), 4, seed=5)

    paired = build()
    monkeypatch.setattr(cnnbp.models.Model, "_residual_fusions", lambda self: {})
    apart = build()
    assert len(paired._residual) == 6 and not apart._residual
    assert np.array_equal(paired.network.flat_params(), apart.network.flat_params())
    assert np.array_equal(paired.network.flat_state(), apart.network.flat_state())
    for m in (paired, apart):
        m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.array_equal(paired.network.flat_params(), apart.network.flat_params())
    assert np.array_equal(paired.network.flat_state(), apart.network.flat_state())
    for a, b in zip(paired.network.optimizer_state(), apart.network.optimizer_state()):
        assert np.array_equal(a, b)


def test_batch_norm_whose_input_is_also_the_residual(monkeypatch):
    """Add([BatchNormalization(a), a]): not paired (the residual is the normalisation's own input,
    one gradient for both), and when paired all the same, gradients still match finite differences."""
    def build():
        cnnbp.set_seed(6)
        x_in = Input((4, 5, 2))
        a = Conv2D(3, 3, padding="same", activation="tanh")(x_in)
        y = ReLU()(Add()([BatchNormalization()(a), a]))
        m = cnnbp.Model(x_in, Dense(3, activation="softmax")(Flatten()(y)), dtype="float64")
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        return m

    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((4, 4, 5, 2)), np.eye(3)[[0, 1, 2, 1]]
    m = build()
    assert not m._residual
    _check_graph_gradients(m, x, y)
    monkeypatch.setattr(cnnbp.models.Model, "_residual_fusions",
                        lambda self: {l.name: self._inbound[l.name][0] for l in self._layers if type(l) is Add})
    m = build()
    assert len(m._residual) == 1 and "Add" not in [n["kind"] for n in m.network.layer_info()]
    _check_graph_gradients(m, x, y)


def _random_residual_net(variant):
    """A small residual network drawn from `variant`: optional BatchNormalization+ReLU stems, frozen
    normalisations, blocks with identity, projection or long-range shortcuts, the Add's inputs in
    either order, with or without its ReLU."""
    r = np.random.default_rng(variant)
    cnnbp.set_seed(3)
    inp = Input((6, 6, 3))
    t = Conv2D(4, 3, padding="same")(inp)
    if r.random() < 0.5:
        t = ReLU()(BatchNormalization(center=bool(r.random() < 0.7), scale=bool(r.random() < 0.7))(t))
    outs = [t]
    for _ in range(3):
        src = outs[-1]
        bn = BatchNormalization()
        bn.trainable = bool(r.random() >= 0.3)
        a = bn(Conv2D(4, 3, padding="same")(src))
        if r.random() < 0.6:
            a = ReLU()(a)
        c = BatchNormalization()(Conv2D(4, 3, padding="same")(a))
        sc = [src, BatchNormalization()(Conv2D(4, 1)(src)), outs[0]][r.integers(0, 3)]
        y = Add()([c, sc] if r.random() < 0.5 else [sc, c])
        outs.append(ReLU()(y) if r.random() < 0.7 else y)
    m = cnnbp.Model(inp, Dense(3, activation="softmax")(Flatten()(outs[-1])))
    m.compile(optimizer=cnnbp.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy")
    return m


def test_random_residual_graphs_train_as_the_unfused_layers(monkeypatch):
    """Fusions, BatchNormalization + Add nodes, recomputed outputs (once for several readers or
    per reader) and sums written in place: on random residual graphs, training, prediction and a
    backward pass run twice on one forward pass give the unfused network's bits."""
    rng = np.random.default_rng(0)
    x = rng.random((12, 6, 6, 3), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 12)]
    for variant in range(12):
        monkeypatch.setattr(cnnbp.models, "_FUSE_ACTIVATIONS", True)
        fused = _random_residual_net(variant)
        monkeypatch.setattr(cnnbp.models, "_FUSE_ACTIVATIONS", False)
        plain = _random_residual_net(variant)
        plain.set_weights(fused.get_weights())
        dxs = []
        for m in (fused, plain):
            m.network.forward(x, training=True)
            dx = [m.network.backward(y, input_grad=True)[2] for _ in range(2)]
            assert np.array_equal(dx[0], dx[1]), variant
            dxs.append(dx[0])
            m.fit(x, y, batch_size=4, epochs=2, verbose=0)
            m.network.folding = False
        assert np.array_equal(dxs[0], dxs[1]), variant
        for a, b in zip(fused.get_weights(), plain.get_weights()):
            assert np.array_equal(a, b), variant
        assert np.array_equal(fused.predict(x, verbose=0), plain.predict(x, verbose=0)), variant


def test_three_branch_concatenate_gradients_match_finite_differences():
    cnnbp.set_seed(3)
    rng = np.random.default_rng(4)
    x = Input((6, 6, 2))
    a = Conv2D(2, 1, activation="tanh")(x)
    b = Conv2D(3, 3, padding="same", activation="sigmoid")(x)
    c = MaxPooling2D(3, strides=1, padding="same")(x)
    y = Concatenate()([a, b, c])
    y = GlobalMaxPooling2D()(Conv2D(4, 3, activation="tanh")(y))
    model = cnnbp.Model(x, Dense(2)(y), dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    _check_graph_gradients(model, rng.standard_normal((3, 6, 6, 2)), rng.standard_normal((3, 2)))


def test_every_merge_and_reshaping_layer_in_one_graph_gradients():
    cnnbp.set_seed(5)
    rng = np.random.default_rng(6)
    x = Input((5, 5, 2))
    a = Conv2D(2, 3, padding="same", activation="tanh")(x)
    b = Conv2D(2, 1, activation="sigmoid")(x)
    m = Multiply()([a, b, x])
    s = Subtract()([a, b])
    av = Average()([m, s])
    mx = Maximum()([av, Identity()(a)])
    p = Cropping2D(((1, 0), (0, 2)))(ZeroPadding2D(((0, 1), (2, 1)))(mx))
    y = Dense(3)(Flatten()(Conv2D(2, 2, activation="tanh")(p)))
    model = cnnbp.Model(x, y, dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    _check_graph_gradients(model, rng.standard_normal((2, 5, 5, 2)), rng.standard_normal((2, 3)))


def test_tensor_read_twice_by_one_layer():
    """Add()([h, h]): one layer reads a tensor twice; its gradient is the sum of both."""
    cnnbp.set_seed(7)
    x = Input((4,))
    h = Dense(3, activation="tanh")(x)
    model = cnnbp.Model(x, Dense(2)(Add()([h, h])), dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(8)
    _check_graph_gradients(model, rng.standard_normal((3, 4)), rng.standard_normal((3, 2)))


def test_small_resnet_gradients_match_finite_differences():
    cnnbp.set_seed(9)
    model = cnnbp.applications.resnet(8, (8, 8, 1), 3)
    # the same architecture in float64, rebuilt from its JSON
    m64 = cnnbp.io.model_from_json(cnnbp.io.model_to_json(model).replace('"float32"', '"float64"'))
    m64.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 8, 8, 1))
    y = np.eye(3)[[0, 1, 2, 0]]
    net = m64.network
    net.forward(x, training=True)
    net.backward(y)
    grads = np.array(net.flat_grads())
    params = net.flat_params()
    # A sample of parameters of every layer (the full check takes minutes).
    idx = np.unique(np.concatenate([np.arange(p[2], p[2] + min(p[3], 6)) for info in net.layer_info()
                                    for p in info["params"]]))
    for i in idx:
        old = params[i]
        vals = []
        for d in (1e-5, -1e-5):
            params[i] = old + d
            vals.append(_train_mode_loss(net, x, y))
        params[i] = old
        num = (vals[0] - vals[1]) / 2e-5
        assert abs(num - grads[i]) <= 1e-6 * max(1.0, abs(num)), (i, num, grads[i])


def test_functional_chain_equals_sequential_bit_for_bit():
    def layers():
        return [Conv2D(4, 3, activation="relu"), MaxPooling2D(), Flatten(), Dense(3, activation="softmax")]

    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    cnnbp.set_seed(11)
    seq = cnnbp.Sequential([Input((8, 8, 1))] + layers())
    cnnbp.set_seed(11)
    t = inp = Input((8, 8, 1))
    for layer in layers():
        t = layer(t)
    fun = cnnbp.Model(inp, t)
    for m in (seq, fun):
        m.compile(optimizer="adam", loss="categorical_crossentropy")
        m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        assert np.array_equal(a, b)


def test_layers_in_topological_order_and_summary_connections():
    x = Input((6, 6, 3), name="img")
    a = Conv2D(4, 3, padding="same", name="left")(x)
    b = Conv2D(4, 1, name="right")(x)
    s = Add(name="merge")([a, b])
    model = cnnbp.Model(x, Dense(2, name="out")(GlobalAveragePooling2D(name="gap")(s)))
    assert [l.name for l in model.layers] == ["left", "right", "merge", "gap", "out"]
    assert model.get_layer("merge").output_shape == (None, 6, 6, 4)
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text
    assert "left, right" in text and "img" in text
    assert "Training step memory (planned): batch 32:" in text


def test_planned_bytes_grow_with_the_batch_and_count_every_buffer():
    model = cnnbp.applications.resnet(8, (16, 16, 3), 10)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    b32, b64 = model.planned_bytes(32), model.planned_bytes(64)
    assert b64["activations"] == 2 * b32["activations"] > 0
    assert b32["params"] == b32["grads"] == model.network.flat_params().nbytes
    assert b32["state"] == model.network.flat_state().nbytes > 0
    parts = ("params", "grads", "optimizer", "state", "activations", "gradients", "workspace", "layers")
    assert b32["total"] == sum(b32[k] for k in parts)
    assert b32["largest"] > 0 and b32["largest_layer"]


def test_gradient_buffers_are_shared_by_liveness():
    """A chain needs two gradient buffers whatever its length; the plan's gradient bytes stay
    below one buffer per layer."""
    model = cnnbp.Sequential([Input((16,))] + [Dense(16, activation="relu") for _ in range(12)])
    per_buffer = 32 * 16 * 4
    assert model.planned_bytes(32)["gradients"] == 2 * per_buffer
    res = cnnbp.applications.resnet(20, (8, 8, 3), 10)
    info = res.network.layer_info()
    act = res.planned_bytes(32)["activations"]
    assert res.planned_bytes(32)["gradients"] < act / 4, len(info)


def test_outputs_no_backward_reads_share_buffers():
    """Dense (linear) -> tanh: tanh's backward reads its output, not its input, so each Dense
    output is dead once tanh has run and the next Dense output takes its buffer. Kept: the tanh
    outputs (read by their backward and by the next Dense's weight gradient) and the two
    predictions the loss may read."""
    cnnbp.set_seed(3)
    m = cnnbp.Sequential([Input((16,)), Dense(32), Activation("tanh"), Dense(32), Activation("tanh"), Dense(4),
                          Activation("softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    # one slot shared by the three Dense outputs (the logits included: kept from then on), the two
    # tanh outputs, the softmax
    per_sample = 32 + 32 + 32 + 4
    assert m.planned_bytes(8)["activations"] == 8 * per_sample * 4
    net = m.network
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    net.forward(x)
    with pytest.raises(ValueError, match=r"not kept .*keep=\[0\]"):
        net.activation(0)  # the second Dense wrote over it
    net.forward(x, keep=[0])
    w, b = m.layers[0].get_weights()
    ref.assert_close(net.activation(0), x @ w + b, 1e-6)
    net.forward(x)  # back to the shared plan; training still matches float64 finite differences
    y = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3]]
    m.fit(x, y, epochs=2, batch_size=4, verbose=0)


def test_resnet_plan_keeps_only_what_backward_reads():
    """In a ResNet block the second BatchNormalization's output is read only by the Add, whose
    backward needs no input values: it shares a buffer, so the plan is below one buffer per node."""
    m = cnnbp.applications.resnet(8, (16, 16, 3), 10)
    every = sum(int(np.prod(i["output_shape"])) for i in m.network.layer_info()) * 32 * 4
    assert m.planned_bytes(32)["activations"] < every


def test_batch_norm_relu_outputs_are_recomputed_not_kept():
    """A BatchNormalization+ReLU output read by a convolution is not kept from forward to
    backward: the convolution's backward gets it recomputed, in one scratch buffer, from the
    normalisation's input (kept for its own backward) with that forward's scale and shift. The
    plan is smaller than with those outputs kept, and the gradients are the kept plan's to the bit, although later nodes have written over the buffers."""
    cnnbp.set_seed(8)
    m = cnnbp.applications.resnet(8, (12, 12, 3), 4)
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    net = m.network
    nodes = [l._out_node for l in m.layers if isinstance(l, BatchNormalization) and l._fused_act == "relu"]
    assert len(nodes) >= 3
    rng = np.random.default_rng(3)
    x = rng.random((6, 12, 12, 3), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 6)]

    def step(keep):
        net.forward(x, training=True, keep=keep)
        loss, _, dx = net.backward(y, input_grad=True)
        return m.planned_bytes(6)["activations"], (loss, np.array(net.flat_grads()), dx)

    small, recomputed = step([])
    big, kept = step(nodes)
    assert big - small >= 6 * 4 * 12 * 12 * 16 / 4  # at least a stride-2 stage's tensor
    for a, b in zip(recomputed, kept):
        assert np.array_equal(a, b)


def test_steady_state_resnet_step_allocates_no_buffers():
    model = compiled_resnet(8, (12, 12, 3), 4)
    rng = np.random.default_rng(0)
    x = rng.random((16, 12, 12, 3), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    net = model.network
    net.train_step(x, y)
    before = _core._buffer_allocations()
    for _ in range(5):
        net.train_step(x, y)
    net.train_step(x[:9], y[:9])
    net.predict(x)
    assert _core._buffer_allocations() == before


def test_thread_count_changed_from_another_thread_during_training():
    """The step reads the thread count once: flipping it from another Python thread while
    training never overruns the workspace (the sanitizer run checks the memory accesses)."""
    model = cnnbp.applications.resnet(8, (12, 12, 3), 4)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.random((64, 12, 12, 3), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 64)]
    old = cnnbp.get_num_threads()
    stop = threading.Event()

    def flip():
        n = 0
        while not stop.is_set():
            cnnbp.set_num_threads(1 + n % 4)
            n += 1

    t = threading.Thread(target=flip)
    t.start()
    try:
        for _ in range(3):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    finally:
        stop.set()
        t.join()
        cnnbp.set_num_threads(old)
    assert np.isfinite(model.evaluate(x, y, verbose=0))


# ---- errors ----------------------------------------------------------------------------------
def test_merge_shape_mismatch_names_both_layers():
    x = Input((8, 8, 3))
    a = Conv2D(16, 3, padding="same", name="conv_a")(x)
    b = Conv2D(32, 3, padding="same", name="conv_b")(x)
    with pytest.raises(ValueError, match=r"add_bad \(Add\).*\(None, 8, 8, 16\) from 'conv_a' and \(None, 8, 8, 32\) "
                                         r"from 'conv_b'"):
        cnnbp.Model(x, Add(name="add_bad")([a, b]))


def test_concatenate_mismatch_names_both_layers():
    x = Input((8, 8, 3))
    a = Conv2D(4, 3, name="c3")(x)
    b = Conv2D(4, 1, name="c1")(x)
    with pytest.raises(ValueError, match=r"Concatenate.*\(None, 6, 6, 4\) from 'c3' and \(None, 8, 8, 4\) from 'c1'"):
        cnnbp.Model(x, Concatenate()([a, b]))


def test_shared_layer_is_refused():
    x = Input((4,))
    d = Dense(4)
    with pytest.raises(ValueError, match="shared layers .weight sharing. are not supported"):
        cnnbp.Model(x, Add()([d(x), d(Dense(4)(x))]))


def test_merge_needs_a_list():
    x = Input((4,))
    with pytest.raises(ValueError, match="takes a list of at least 2"):
        Add()(x)
    with pytest.raises(ValueError, match="exactly 2"):
        Subtract()([x, x, x])


def test_second_input_is_refused():
    x1, x2 = Input((4,), name="first"), Input((4,), name="second")
    with pytest.raises(ValueError, match="depend on input 'second'"):
        cnnbp.Model(x1, Add()([Dense(4)(x1), Dense(4)(x2)]))


def test_duplicate_layer_names_are_refused():
    x = Input((4,))
    with pytest.raises(ValueError, match="two layers are named 'twin'"):
        cnnbp.Model(x, Add()([Dense(4, name="twin")(x), Dense(4, name="twin")(x)]))


def _two_dense_json(inbound_a, inbound_b):
    import json
    return json.dumps({"class_name": "Functional", "input_shape": [4], "input_name": "in", "output": "b",
                       "layers": [{"class_name": "Dense", "config": {"name": "a", "units": 4}, "inbound": inbound_a},
                                  {"class_name": "Dense", "config": {"name": "b", "units": 4}, "inbound": inbound_b}]})


def test_cycle_in_a_json_architecture_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        cnnbp.io.model_from_json(_two_dense_json(["b"], ["a"]))


def test_disconnected_layer_in_a_json_architecture_is_refused():
    with pytest.raises(ValueError, match="'a'.*not used by the model's output"):
        cnnbp.io.model_from_json(_two_dense_json(["in"], ["in"]))


def _kinds(model):
    return [i["kind"] for i in model.network.layer_info()]


def test_relu_layer_runs_inside_the_layer_before_it_where_exact():
    x = Input((4,))
    assert _kinds(cnnbp.Model(x, ReLU()(Dense(3)(x)))) == ["Dense"]
    assert _kinds(cnnbp.Model(x, Activation("relu")(BatchNormalization()(Dense(3)(x))))) == ["Dense",
                                                                                              "BatchNormalization"]
    a, b = Dense(3)(x), Dense(3)(x)
    m = cnnbp.Model(x, ReLU(name="r")(Add()([a, b])))
    assert _kinds(m) == ["Dense", "Dense", "Add"]
    assert m.get_layer("r").output_shape == (None, 3) and m.get_layer("r").get_weights() == []
    # Not fused: an activation of its own, a leaky ReLU, a tensor with a second reader, Maximum
    # (its backward reads its output) and Concatenate.
    assert _kinds(cnnbp.Model(x, ReLU()(Dense(3, activation="tanh")(x)))) == ["Dense", "Activation"]
    assert _kinds(cnnbp.Model(x, ReLU(negative_slope=0.1)(Dense(3)(x)))) == ["Dense", "Activation"]
    a = Dense(3)(x)
    assert _kinds(cnnbp.Model(x, Add()([ReLU()(a), a]))) == ["Dense", "Activation", "Add"]
    a, b = Dense(3)(x), Dense(3)(x)
    assert _kinds(cnnbp.Model(x, ReLU()(Maximum()([a, b])))) == ["Dense", "Dense", "Maximum", "Activation"]
    a, b = Dense(3)(x), Dense(3)(x)
    assert _kinds(cnnbp.Model(x, ReLU()(Concatenate()([a, b])))) == ["Dense", "Dense", "Concatenate", "Activation"]


def test_fused_relu_trains_bit_for_bit_as_the_separate_layer(monkeypatch):
    """ResNet blocks (BatchNormalization -> ReLU, BatchNormalization -> Add -> ReLU in one node, the
    sum written over the residual) and Conv2D -> ReLU, Dense -> ReLU: the fused network computes
    exactly what the unfused one does, forward, backward and the moving statistics, although it
    keeps fewer tensors (recomputing some for the backward)."""
    rng = np.random.default_rng(5)
    x = rng.random((24, 10, 10, 2), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 24)]

    def build():
        cnnbp.set_seed(21)
        inp = Input((10, 10, 2))
        t = ReLU()(Conv2D(4, 3, padding="same")(inp))
        for filters, stride in ((4, 1), (6, 2)):
            b = ReLU()(BatchNormalization()(Conv2D(filters, 3, strides=stride, padding="same")(t)))
            b = BatchNormalization()(Conv2D(filters, 3, padding="same")(b))
            sc = t if stride == 1 else BatchNormalization()(Conv2D(filters, 1, strides=stride)(t))
            t = Activation("relu")(Add()([b, sc]))
        t = ReLU()(Dense(5)(Flatten()(t)))
        m = cnnbp.Model(inp, Dense(3, activation="softmax")(t))
        m.compile(optimizer=cnnbp.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy")
        return m

    fused = build()
    monkeypatch.setattr(cnnbp.models, "_FUSE_ACTIVATIONS", False)
    plain = build()
    assert len(_kinds(fused)) < len(_kinds(plain)) and "Activation" not in _kinds(fused)[:-1]
    assert "Add" not in _kinds(fused) and len(fused._residual) == 2
    assert fused.planned_bytes(8)["activations"] < plain.planned_bytes(8)["activations"]
    plain.set_weights(fused.get_weights())  # (initial draws follow the node order, which differs)
    for m in (fused, plain):
        m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        assert np.array_equal(a, b)
    # (predict folds each BatchNormalization into its convolution where the plan allows, which
    # differs between the two: the same bits unfolded, within rounding folded)
    ref.assert_close(fused.predict(x, verbose=0), plain.predict(x, verbose=0), 1e-6)
    fused.network.folding = plain.network.folding = False
    assert np.array_equal(fused.predict(x, verbose=0), plain.predict(x, verbose=0))


# Convolution -> pooling pairs the network runs image by image (Network::pool_fused): the
# convolution's output has at least 16384 elements per image (33x31x17: 17391) and its algorithm
# is direct.
POOL_PAIRS = {
    # the seed model's pair: ReLU, 2x2 max pooling (which applies the ReLU's derivative)
    "relu-max": lambda: [Conv2D(17, 3, padding="same", activation="relu"), MaxPooling2D()],
    # odd sizes, padded 3x3 windows with stride 2, a 5x5 kernel, and no bias
    "relu-max-same": lambda: [Conv2D(17, 5, padding="same", activation="relu", use_bias=False),
                              MaxPooling2D(3, strides=2, padding="same")],
    # tanh: the convolution's backward reads its output, so training passes keep it unfused
    "tanh-max": lambda: [Conv2D(17, 3, padding="same", activation="tanh"), MaxPooling2D()],
    "linear-average": lambda: [Conv2D(18, 3, padding="same"), AveragePooling2D()],
}


def _pool_model(pair, first=None, policy=None):
    cnnbp.set_seed(8)
    inp = Input((33, 31, 3))
    t = inp if first is None else first(inp)
    for layer in POOL_PAIRS[pair]():
        t = layer(t)
    out = Dense(4, activation="softmax")(Flatten()(t))
    m = cnnbp.Model(inp, out, dtype=policy)
    m.compile(optimizer=cnnbp.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.mark.parametrize("pair", list(POOL_PAIRS))
@pytest.mark.parametrize("policy", [None, "mixed_bfloat16"])
def test_convolution_and_pooling_run_image_by_image_bit_for_bit(pair, policy, threads):
    rng = np.random.default_rng(11)
    x = rng.random((21, 33, 31, 3), dtype=np.float32)   # batches of 8, 8, 5
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 21)]
    fused, plain = _pool_model(pair, policy=policy), _pool_model(pair, policy=policy)
    plain.network.pool_fusion = False
    assert fused.network.pool_fusion
    for m in (fused, plain):
        m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert plain.network.pooled_pairs == 0
    assert fused.network.pooled_pairs == (0 if pair == "tanh-max" else 1)   # (the last pass: a training step)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        assert np.array_equal(a, b)
    p = fused.predict(x, verbose=0)
    assert fused.network.pooled_pairs == 1   # inference: nothing reads the convolution's output
    assert np.array_equal(p, plain.predict(x, verbose=0))
    assert fused.evaluate(x, y, verbose=0) == plain.evaluate(x, y, verbose=0)
    assert [l.__class__.__name__ for l in fused.layers[:2]] == ["Conv2D", POOL_PAIRS[pair]()[1].__class__.__name__]
    with pytest.raises(ValueError, match="ran image by image with '(max|average)_pooling2d"):
        fused.network.activation(0)   # (node 0: the convolution)
    # forward() (saliency, Grad-CAM, layer outputs) computes the convolution's output as usual
    fused.network.forward(x[:5], training=False, keep=[0])
    assert fused.network.pooled_pairs == 0
    plain.network.forward(x[:5], training=False, keep=[0])
    assert np.array_equal(np.asarray(fused.network.activation(0)), np.asarray(plain.network.activation(0)))


def test_pooling_fusion_stays_off_where_its_conditions_fail():
    rng = np.random.default_rng(12)
    x = rng.random((8, 33, 31, 3), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)]
    # A convolution over another layer's output (not the model input): the same bits.
    first = lambda t: Conv2D(16, 1)(t)   # noqa: E731
    a, b = _pool_model("relu-max", first), _pool_model("relu-max", first)
    b.network.pool_fusion = False
    for m in (a, b):
        m.fit(x, y, batch_size=4, epochs=1, verbose=0)
        assert m.predict(x, verbose=0).shape == (8, 4)
    for u, v in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(u, v)
    # check_numerics names the layer whose output is not finite: every output is computed
    m = _pool_model("relu-max")
    m.compile(optimizer="adam", loss="categorical_crossentropy", check_numerics=True)
    m.train_on_batch(x, y)
    assert m.network.pooled_pairs == 0
    # a monitored step reads the convolution's output
    m = _pool_model("relu-max")
    m.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cnnbp.callbacks.GradientMonitor(every=1, warn=False)])
    assert m.network.pooled_pairs == 0
    # small outputs (LeNet's 28x28x6): per-image setup costs more than the fusion saves
    cnnbp.set_seed(3)
    m = cnnbp.Sequential([Input((28, 28, 1)), Conv2D(6, 5, padding="same", activation="relu"), MaxPooling2D(),
                          Flatten(), Dense(2, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    m.predict(rng.random((4, 28, 28, 1), dtype=np.float32), verbose=0)
    assert m.network.pooled_pairs == 0
    # a Winograd convolution numbers its tiles over the batch: not per image
    cnnbp.set_seed(3)
    m = cnnbp.Sequential([Input((32, 32, 16)), Conv2D(16, 3, padding="same", activation="relu"), MaxPooling2D(),
                          Flatten(), Dense(2, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    m.predict(rng.random((4, 32, 32, 16), dtype=np.float32), verbose=0)
    winograd = cnnbp.ops.conv2d_algorithms((4, 32, 32, 16), (3, 3, 16, 16), padding="same")["forward"] != "direct"
    assert m.network.pooled_pairs == (0 if winograd else 1)


# ---- BatchNormalization+ReLU applied by the convolution that reads it -------------------------
def _bn_conv_model(filters=33, padding="same", trainable=True, policy=None, extra_reader=False, act="relu"):
    """conv -> BatchNormalization -> ReLU -> 3x3 stride-1 conv (the pair) -> ... ; 33 and 34
    channels: past both SIMD widths' shape rule, with tail lanes on AVX2 and AVX-512."""
    cnnbp.set_seed(4)
    inp = Input((9, 11, 3))
    t = Conv2D(filters, 3, padding="same")(inp)
    bn = BatchNormalization()
    bn.trainable = trainable
    t = bn(t)
    if act:
        t = Activation(act)(t)
    u = Conv2D(34, 3, padding=padding, activation="relu")(t)
    if extra_reader:
        u = Concatenate()([u, Conv2D(34, 3, padding=padding)(t)])
    out = Dense(4, activation="softmax")(GlobalAveragePooling2D()(u))
    m = cnnbp.Model(inp, out, dtype=policy)
    m.compile(optimizer=cnnbp.optimizers.SGD(0.1, momentum=0.9), loss="categorical_crossentropy")
    return m


def _winograd_here(c=33, k=34):
    return cnnbp.ops.conv2d_algorithms((8, 9, 11, c), (3, 3, c, k), padding="same")["backward_weight"] != "direct"


def _fused_and_plain(make, x, y, batch=8, epochs=2):
    fused, plain = make(), make()
    plain.network.prologue_fusion = False
    assert fused.network.prologue_fusion
    for m in (fused, plain):
        m.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    assert plain.network.prologue_pairs == 0
    for a, b in zip(fused.get_weights(), plain.get_weights()):   # (moving statistics included)
        assert np.array_equal(a, b)
    return fused, plain


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("trainable", [True, False], ids=["train", "frozen-bn"])
def test_batch_norm_relu_applied_by_the_convolution_bit_for_bit(padding, trainable, threads):
    """Training steps let the convolution normalise and clamp its input as it loads it (the
    normalised tensor is never stored, nor recomputed for the weight gradient): the same bits as
    the layers apart, forward (the loss) and backward (every weight and statistic)."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((21, 9, 11, 3)).astype(np.float32)   # batches of 8, 8, 5
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 21)]
    fused, plain = _fused_and_plain(lambda: _bn_conv_model(padding=padding, trainable=trainable), x, y)
    assert fused.network.prologue_pairs == (1 if _winograd_here() else 0)
    assert fused.evaluate(x, y, verbose=0) == plain.evaluate(x, y, verbose=0)
    f = fused.network
    f.train_step(x[:8], y[:8])
    if f.prologue_pairs:
        with pytest.raises(ValueError, match=r"was applied by 'conv2d(_\d+)?' as it read its input"):
            f.activation(1)   # (node 1: the BatchNormalization+ReLU)
    f.forward(x[:5], training=True, keep=[1])   # forward() stores it as usual
    assert f.prologue_pairs == 0
    plain.network.train_step(x[:8], y[:8])
    plain.network.forward(x[:5], training=True, keep=[1])
    assert np.array_equal(np.asarray(f.activation(1)), np.asarray(plain.network.activation(1)))


def test_resnet_applies_each_first_batch_norm_in_its_block_convolution():
    # Each basic block's first BatchNormalization+ReLU is read only by the block's second
    # convolution (3x3, stride 1): fused where that convolution runs Winograd.
    rng = np.random.default_rng(22)
    x = rng.random((12, 12, 12, 3), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 12)]

    fused, _ = _fused_and_plain(lambda: compiled_resnet(14, (12, 12, 3), 4, seed=9), x, y, batch=6)
    expect = sum(_winograd_here(c, c) for c in (16, 16, 32, 32, 64, 64))
    assert fused.network.prologue_pairs == expect


def test_batch_norm_prologue_stays_off_where_its_conditions_fail():
    rng = np.random.default_rng(23)
    x = rng.standard_normal((8, 9, 11, 3)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)]
    # a second reader, no ReLU (the plain normalisation), or mixed precision (bfloat16 convolutions)
    for make in (lambda: _bn_conv_model(extra_reader=True), lambda: _bn_conv_model(act=None),
                 lambda: _bn_conv_model(act="tanh"), lambda: _bn_conv_model(policy="mixed_bfloat16")):
        m = make()
        m.train_on_batch(x, y)
        assert m.network.prologue_pairs == 0
    # check_numerics and a monitored step read every output
    m = _bn_conv_model()
    m.compile(optimizer="sgd", loss="categorical_crossentropy", check_numerics=True)
    m.train_on_batch(x, y)
    assert m.network.prologue_pairs == 0
    m = _bn_conv_model()
    m.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cnnbp.callbacks.GradientMonitor(every=1, warn=False)])
    assert m.network.prologue_pairs == 0
    # inference passes store it (and fold the BatchNormalization into the convolution before it)
    m = _bn_conv_model()
    m.predict(x, verbose=0)
    assert m.network.prologue_pairs == 0


PROLOGUE_SCRIPT = r"""
import json, sys
import numpy as np
import cnnbp
sys.path.insert(0, "tests")
from test_graph import _bn_conv_model
rng = np.random.default_rng(24)
x = rng.standard_normal((13, 9, 11, 3)).astype(np.float32)
y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 13)]
out = []
for pad in ("same", "valid"):
    fused, plain = _bn_conv_model(padding=pad), _bn_conv_model(padding=pad)
    plain.network.prologue_fusion = False
    for m in (fused, plain):
        m.fit(x, y, batch_size=5, epochs=2, verbose=0)
    out.append([fused.network.prologue_pairs,
                all(bool(np.array_equal(a, b)) for a, b in zip(fused.get_weights(), plain.get_weights()))])
print(json.dumps([cnnbp.cpu_capability(), out]))
"""


@pytest.mark.parametrize("algo", ["winograd2", "winograd4", "direct"])
@pytest.mark.parametrize("isa", [i for i in ISAS if i in ("baseline", "avx2", "avx512")])
def test_batch_norm_prologue_on_every_kernel_path(isa, algo):
    # Each Winograd variant on each SIMD path; the direct kernels and the portable path store the
    # normalised tensor (no pair); the same bits as the layers apart everywhere.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-c", PROLOGUE_SCRIPT], cwd=root, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, CNNBP_CPU_CAPABILITY=isa, CNNBP_CONV_ALGO=algo))
    assert p.returncode == 0, p.stderr
    cap, runs = json.loads(p.stdout.strip().splitlines()[-1])
    assert cap == isa
    pairs = 1 if isa != "baseline" and algo != "direct" else 0
    assert runs == [[pairs, True], [pairs, True]]


def test_activation_layers_and_input_layer_in_a_graph():
    from cnnbp.layers import InputLayer, LeakyReLU, Softmax
    inp = InputLayer((5,), name="raw")
    x = inp.output
    a = LeakyReLU(0.1)(x)
    s = Softmax()(x)
    m = cnnbp.Model(x, Concatenate()([a, s]))
    v = np.array([[-2.0, -0.5, 0.0, 1.0, 3.0]], np.float32)
    out = m.predict(v)
    assert np.allclose(out[0, :5], np.where(v[0] > 0, v[0], 0.1 * v[0]))
    e = np.exp(v[0] - v[0].max())
    assert np.allclose(out[0, 5:], e / e.sum(), atol=1e-7)
    seq = cnnbp.Sequential([InputLayer((5,)), LeakyReLU(0.2)])
    assert np.allclose(seq.predict(v), np.where(v > 0, v, 0.2 * v))


def test_loss_on_a_view_of_the_input():
    """Flatten -> softmax with the fused loss: the loss is taken on a view of the input itself."""
    from cnnbp.layers import Softmax
    m = cnnbp.Sequential([Input((2, 2)), Flatten(), Softmax()])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = np.random.default_rng(0).random((3, 2, 2), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[[0, 1, 2]]
    assert m.network.loss_fused
    loss = m.train_on_batch(x, y)
    assert np.isfinite(loss)
    m.network.forward(x, training=True)
    _, _, dx = m.network.backward(y, input_grad=True)
    p = np.exp(x.reshape(3, 4)) / np.exp(x.reshape(3, 4)).sum(axis=1, keepdims=True)
    ref.assert_close(dx.reshape(3, 4), (p - y) / 3, 1e-5)
