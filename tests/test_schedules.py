"""Learning-rate schedules: the C++ step's value at every step and the Python one against Keras's
formulas (tests/reference.py) to 1e-12, a schedule inside training, and resuming mid-schedule
after save and load."""

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L
from cnnbp.optimizers import schedules as S
import reference as ref

SCHEDULES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.5)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.5, staircase=True)),
    ("PiecewiseConstantDecay", dict(boundaries=[5, 12, 30], values=[0.1, 0.05, 0.01, 0.001])),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=20)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=9, end_learning_rate=0.01, power=2.0,
                             cycle=True)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=25)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=25, alpha=0.05)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=25, alpha=0.1, warmup_target=0.2, warmup_steps=6)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=5)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=4, t_mul=1.0, m_mul=0.5, alpha=0.1)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=3, t_mul=1.5, m_mul=0.8)),
]


def _model():
    cnnbp.set_seed(4)
    return cnnbp.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")], dtype="float64")


@pytest.mark.parametrize("name,cfg", SCHEDULES, ids=[f"{s[0]}-{i}" for i, s in enumerate(SCHEDULES)])
def test_schedule_matches_the_formula_in_python_and_in_the_step(name, cfg):
    sched = getattr(S, name)(**cfg)
    m = _model()
    m.compile(optimizer=cnnbp.optimizers.SGD(sched), loss="sparse_categorical_crossentropy")
    for step in range(60):
        expect = ref.schedule(name, step, **cfg)
        assert abs(sched(step) - expect) <= 1e-12 * max(expect, 1e-3), step
        assert abs(m.network.learning_rate_at(step) - expect) <= 1e-12 * max(expect, 1e-3), step
    again = S.deserialize(S.serialize(sched))
    assert [again(s) for s in range(40)] == [sched(s) for s in range(40)]


def test_a_scheduled_sgd_step_uses_the_rate_of_its_step(rng):
    cfg = dict(initial_learning_rate=0.2, decay_steps=4, alpha=0.0)
    m = _model()
    m.compile(optimizer=cnnbp.optimizers.SGD(S.CosineDecay(**cfg)), loss="sparse_categorical_crossentropy")
    net = m.network
    for t in range(6):
        x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
        p = np.array(net.flat_params())
        net.forward(x, training=True)
        net.backward(y.astype(np.float64))
        g = np.array(net.flat_grads())
        net.apply_update()
        ref.assert_close(net.flat_params(), p - ref.schedule("CosineDecay", t, **cfg) * g, 1e-12, f"step {t}")
    assert m.optimizer.learning_rate == S.CosineDecay(**cfg)(6)


def test_resume_mid_schedule_is_bit_for_bit(rng, tmp_path):
    x, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)

    def build():
        m = _model()
        m.compile(optimizer=cnnbp.optimizers.Adam(S.CosineDecayRestarts(0.05, 3), clipnorm=0.5),
                  loss="sparse_categorical_crossentropy")
        return m
    a = build()
    a.fit(x, y, batch_size=8, epochs=4, verbose=0)
    b = build()
    b.fit(x, y, batch_size=8, epochs=2, verbose=0)
    b.save(tmp_path / "m.cnnbp")
    c = cnnbp.load_model(tmp_path / "m.cnnbp")
    assert isinstance(c.optimizer._schedule, S.CosineDecayRestarts) and c.optimizer.clipnorm == 0.5
    c.fit(x, y, batch_size=8, epochs=4, initial_epoch=2, verbose=0)
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), c.get_weights()))


def test_schedule_arguments_and_the_learning_rate_setter():
    opt = cnnbp.optimizers.SGD(S.ExponentialDecay(0.1, 10, 0.9))
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.5
    with pytest.raises(ValueError, match="decay_steps"):
        S.CosineDecay(0.1, 0)
    with pytest.raises(ValueError, match="len\\(values\\) == len\\(boundaries\\) \\+ 1"):
        S.PiecewiseConstantDecay([1, 2], [0.1])
    with pytest.raises(ValueError, match="warmup_steps"):
        S.CosineDecay(0.1, 10, warmup_target=0.2)
    with pytest.raises(ValueError, match="only one of clipnorm"):
        cnnbp.optimizers.Adam(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match="clipnorm must be > 0"):
        cnnbp.optimizers.Adam(clipnorm=0)
    from cnnbp.optimizers.schedules import CosineDecay   # Keras's import path
    assert CosineDecay is S.CosineDecay
