"""Each optimizer, run by the C++ network over its flat buffers, equals its published update
formula (tests/reference.py) step by step over 5 steps."""

import numpy as np
import pytest

import cnnbp
from cnnbp.layers import Conv2D, Dense, Flatten, Input

import reference as ref

OPTIMIZERS = [
    ("sgd", dict(learning_rate=0.1)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9, nesterov=True)),
    ("sgd", dict(learning_rate=0.05, momentum=0.5, weight_decay=0.01)),
    ("sgd", dict(learning_rate=0.05, momentum=0.5, coupled_weight_decay=0.01)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9, weight_decay=0.1, coupled_weight_decay=0.02, clipnorm=0.05)),
    ("sgd", dict(learning_rate=("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=3, alpha=0.1)),
                 global_clipnorm=0.1)),
    ("adam", dict(learning_rate=("ExponentialDecay", dict(initial_learning_rate=0.01, decay_steps=2, decay_rate=0.5)),
                  clipvalue=0.01)),
    ("rmsprop", dict(learning_rate=("PiecewiseConstantDecay", dict(boundaries=[1, 3], values=[0.01, 0.005, 0.001])),
                     clipnorm=0.1)),
    ("adam", dict()),
    ("adam", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-5)),
    ("adamw", dict(learning_rate=0.01)),
    ("adamw", dict(learning_rate=0.01, weight_decay=0.1)),
    ("rmsprop", dict()),
    ("rmsprop", dict(learning_rate=0.01, rho=0.8, momentum=0.5)),
    ("rmsprop", dict(learning_rate=0.01, centered=True)),
    ("rmsprop", dict(learning_rate=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
    ("adagrad", dict()),
    ("adagrad", dict(learning_rate=0.1, initial_accumulator_value=0.0, epsilon=1e-3)),
    ("adadelta", dict()),
    ("adadelta", dict(learning_rate=1.0, rho=0.9, epsilon=1e-6)),
    ("adamax", dict()),
    ("adamax", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, weight_decay=0.05)),
    ("nadam", dict()),
    ("nadam", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-5)),
    ("lion", dict()),
    ("lion", dict(learning_rate=0.003, beta_1=0.95, beta_2=0.98, weight_decay=0.1)),
]
ADAPTIVE = ("rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion")


def _model(dtype):
    cnnbp.set_seed(21)
    x = Input((5, 5, 2))
    y = Dense(3, activation="softmax")(Flatten()(Conv2D(3, 3, activation="relu")(x)))
    return cnnbp.Model(x, y, dtype=dtype)


def _make_opt(name, kw):
    kw = dict(kw)
    if isinstance(kw.get("learning_rate"), tuple):
        sname, cfg = kw["learning_rate"]
        kw["learning_rate"] = getattr(cnnbp.optimizers.schedules, sname)(**cfg)
    return cnnbp.optimizers.get(name).__class__(**kw)


def _lr(kw, t):
    """The learning rate of step t (1-based) by the reference formulas."""
    lr = kw.get("learning_rate", 0.001)
    if isinstance(lr, tuple):
        return ref.schedule(lr[0], t - 1, **lr[1])
    return lr


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=[f"{o[0]}-{'-'.join(f'{k}{v}' for k, v in o[1].items())}" for o in OPTIMIZERS])
def test_optimizer_matches_formula(name, kw, dtype):
    model = _model(dtype)
    opt = _make_opt(name, kw)
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    net = model.network
    rng = np.random.default_rng(2)
    p = np.array(net.flat_params(), dtype=np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    slots = {}
    tol = 1e-12 if dtype == "float64" else 1e-5
    tensors = [(off, size) for info in net.layer_info() for _, _, off, size in info["params"]]
    clip = {k: kw[k] for k in ("clipnorm", "clipvalue", "global_clipnorm") if k in kw}
    for t in range(1, 6):
        x = rng.standard_normal((4, 5, 5, 2))
        y = np.eye(3)[rng.integers(0, 3, 4)]
        net.forward(x, training=True)
        net.backward(y)
        g = ref.clip_gradients(np.array(net.flat_grads(), dtype=np.float64), tensors, **clip)
        lr = _lr(kw, t)
        assert abs(opt.learning_rate - lr) <= 1e-15 * lr                  # the rate the next step uses
        net.apply_update()
        if name in ADAPTIVE:
            hyper = {k: kw[k] for k in kw if k not in ("learning_rate", "weight_decay") and k not in clip}
            p = ref.adaptive_step(name, p, g, slots, t, lr, kw.get("weight_decay", 0.0), **hyper)
        elif name == "sgd":
            p, m = ref.sgd_step(p, g, m, lr, opt.momentum, opt.coupled_weight_decay, opt.nesterov, opt.weight_decay)
        else:
            p, m, v = ref.adam_step(p, g, m, v, t, lr, opt.beta_1, opt.beta_2, opt.epsilon, opt.weight_decay)
        ref.assert_close(net.flat_params(), p, tol, f"step {t}")
    assert net.iterations == 5 and opt.iterations == 5


def test_train_step_equals_forward_backward_update():
    a, b = _model("float32"), _model("float32")
    for mdl in (a, b):
        mdl.compile(optimizer=cnnbp.optimizers.Adam(0.01), loss="categorical_crossentropy")
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.standard_normal((6, 5, 5, 2)).astype(np.float32)
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 6)]
        la, _ = a.network.train_step(x, y)
        b.network.forward(x, training=True)
        lb, _, _ = b.network.backward(y)
        b.network.apply_update()
        assert la == lb
    assert np.array_equal(a.network.flat_params(), b.network.flat_params())


def test_learning_rate_change_takes_effect_next_step():
    model = _model("float64")
    opt = cnnbp.optimizers.SGD(0.1)
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    net = model.network
    x = np.ones((2, 5, 5, 2))
    y = np.eye(3)[[0, 1]]
    opt.learning_rate = 0.0
    before = np.array(net.flat_params())
    net.train_step(x, y)
    assert np.array_equal(before, net.flat_params())
    opt.learning_rate = 0.5
    assert net.learning_rate == 0.5
    net.train_step(x, y)
    assert not np.array_equal(before, net.flat_params())


def test_ops_update_functions_match_formula():
    rng = np.random.default_rng(4)
    p = rng.standard_normal(37)
    g = rng.standard_normal(37)
    buf = np.zeros(37)
    pe, be = ref.sgd_step(p.copy(), g, buf.copy(), 0.1, 0.9, 0.01, True)
    cnnbp.ops.sgd_update(p, g, buf, 0.1, 0.9, 0.01, True)
    ref.assert_close(p, pe, 1e-14)
    ref.assert_close(buf, be, 1e-14)
    m, v = np.zeros(37), np.zeros(37)
    pe, me, ve = ref.adam_step(p.copy(), g, m.copy(), v.copy(), 1)
    cnnbp.ops.adam_update(p, g, m, v, 1)
    ref.assert_close(p, pe, 1e-14)


@pytest.mark.parametrize("bad", [dict(learning_rate=-1), dict(momentum=-0.1), dict(momentum=0.0, nesterov=True),
                                 dict(learning_rate=float("nan"))])
def test_sgd_rejects_bad_hyperparameters(bad):
    with pytest.raises(ValueError, match="SGD"):
        cnnbp.optimizers.SGD(**bad)


@pytest.mark.parametrize("bad", [dict(beta_1=1.0), dict(beta_2=-0.1), dict(epsilon=-1), dict(amsgrad=True)])
def test_adam_rejects_bad_hyperparameters(bad):
    with pytest.raises(ValueError, match="Adam"):
        cnnbp.optimizers.Adam(**bad)


def test_keras_defaults():
    O = cnnbp.optimizers
    assert O.RMSprop().get_config() == dict(name="RMSprop", learning_rate=0.001, weight_decay=0.0, rho=0.9,
                                            momentum=0.0, epsilon=1e-7, centered=False)
    assert O.Adagrad().get_config() == dict(name="Adagrad", learning_rate=0.001, weight_decay=0.0,
                                            initial_accumulator_value=0.1, epsilon=1e-7)
    assert O.Adadelta().get_config() == dict(name="Adadelta", learning_rate=0.001, weight_decay=0.0, rho=0.95,
                                             epsilon=1e-7)
    for cls in (O.Adamax, O.Nadam):
        assert cls().get_config() == dict(name=cls.__name__, learning_rate=0.001, weight_decay=0.0, beta_1=0.9,
                                          beta_2=0.999, epsilon=1e-7)
    assert O.Lion().get_config() == dict(name="Lion", learning_rate=0.001, weight_decay=0.0, beta_1=0.9, beta_2=0.99)
    for name in ADAPTIVE + ("sgd", "adam", "adamw"):
        assert type(O.get(name)).__name__.lower() == name
    assert isinstance(O.get("RMSprop"), O.RMSprop)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_state_slots_and_resume_are_exact(name, tmp_path):
    """The slots are exposed (as Keras's optimizer variables), survive save/load, and a resumed run
    continues bit for bit (Nadam's momentum product is recomputed from the step number)."""
    rng = np.random.default_rng(5)
    data = [(rng.standard_normal((4, 5, 5, 2)).astype(np.float32), np.eye(3, dtype=np.float32)[rng.integers(0, 3, 4)])
            for _ in range(6)]
    kw = dict(momentum=0.5, centered=True) if name == "rmsprop" else {}
    a = _model("float32")
    a.compile(optimizer=_make_opt(name, kw), loss="categorical_crossentropy")
    slots = {"rmsprop": 3, "lion": 1, "adagrad": 1}.get(name, 2)
    assert len(a.network.optimizer_state()) == slots
    if name == "adagrad":
        assert np.all(a.network.optimizer_state()[0][: a.network.num_params] == np.float32(0.1))
    for x, y in data[:3]:
        a.network.train_step(x, y)
    a.save(tmp_path / "m.cnnbp")
    b = cnnbp.load_model(tmp_path / "m.cnnbp")
    assert type(b._optimizer).__name__.lower() == name and b.network.iterations == 3
    for x, y in data[3:]:
        a.network.train_step(x, y)
        b.network.train_step(x, y)
    assert np.array_equal(a.network.flat_params(), b.network.flat_params())


def test_changing_the_optimizer_kind_restarts_its_state():
    model = _model("float32")
    model.compile(optimizer="adagrad", loss="categorical_crossentropy")
    x = np.ones((2, 5, 5, 2), np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1]]
    model.network.train_step(x, y)
    model.compile(optimizer=cnnbp.optimizers.RMSprop(centered=True), loss="categorical_crossentropy")
    assert model.network.iterations == 0
    assert all(not np.any(s) for s in model.network.optimizer_state())


@pytest.mark.parametrize("cls,bad,match", [
    ("RMSprop", dict(rho=1.5), "rho"), ("RMSprop", dict(momentum=-0.1), "momentum"),
    ("Adagrad", dict(initial_accumulator_value=-1), "initial_accumulator_value"),
    ("Adadelta", dict(epsilon=-1), "epsilon"), ("Adamax", dict(beta_1=1.0), "beta_1"),
    ("Nadam", dict(beta_2=1.0), "beta_2"), ("Lion", dict(beta_1=0.0), "beta_1"),
    ("Lion", dict(beta_2=1.5), "beta_2"), ("Nadam", dict(weight_decay=-1), "weight_decay"),
    ("RMSprop", dict(learning_rate=float("inf")), "learning_rate")])
def test_adaptive_optimizers_reject_bad_hyperparameters(cls, bad, match):
    with pytest.raises(ValueError, match=f"{cls}.*{match}"):
        getattr(cnnbp.optimizers, cls)(**bad)


def test_unknown_optimizer_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="'rmsprop'.*'lion'"):
        cnnbp.optimizers.get("adamm")
