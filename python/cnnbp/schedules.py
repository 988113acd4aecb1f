"""Learning-rate schedules (``cnnbp.optimizers.schedules``), Keras's names, arguments and formulas.

Pass one as any optimizer's ``learning_rate``: the C++ update evaluates it at every step (no
Python call per step), at the 0-based step ``optimizer.iterations`` (the updates made before).
Calling a schedule, ``schedule(step)``, gives the same value in Python. Formulas:
csrc/optim/schedule.h."""

import math
import numbers

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "CosineDecay",
           "CosineDecayRestarts", "serialize", "deserialize"]


def _num(cls, arg, v, positive=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{cls}: {arg} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
    return float(v)


class LearningRateSchedule:
    """Base class: ``__call__(step)`` and ``get_config()``; ``_spec()`` is what the C++ step reads."""

    _kind = 0

    def __call__(self, step):
        raise NotImplementedError

    def _spec(self):
        return dict(self._fields(), kind=self._kind)

    def _fields(self):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ** (step / decay_steps) (staircase: the exponent floored)."""

    _kind = 1

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        c = "ExponentialDecay"
        self.initial_learning_rate = _num(c, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _num(c, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _num(c, "decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step):
        p = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (math.floor(p) if self.staircase else p)

    def _fields(self):
        return dict(initial=self.initial_learning_rate, decay_steps=self.decay_steps, rate=self.decay_rate,
                    staircase=self.staircase)

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate, decay_steps=self.decay_steps,
                    decay_rate=self.decay_rate, staircase=self.staircase, name=self.name)


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[1] while step <= boundaries[1], ..., the last
    value after the last boundary."""

    _kind = 2

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        c = "PiecewiseConstantDecay"
        self.boundaries = [_num(c, "boundaries", b) for b in boundaries]
        self.values = [_num(c, "values", v) for v in values]
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(f"{c}: expected len(values) == len(boundaries) + 1, got {len(self.values)} values for "
                             f"{len(self.boundaries)} boundaries")
        if any(b >= a for a, b in zip(self.boundaries[1:], self.boundaries)):
            raise ValueError(f"{c}: boundaries must increase, got {self.boundaries}")
        self.name = name

    def __call__(self, step):
        i = 0
        while i < len(self.boundaries) and step > self.boundaries[i]:
            i += 1
        return self.values[i]

    def _fields(self):
        return dict(boundaries=self.boundaries, values=self.values)

    def get_config(self):
        return dict(boundaries=self.boundaries, values=self.values, name=self.name)


class PolynomialDecay(LearningRateSchedule):
    """(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end; with cycle the
    decay restarts at every multiple of decay_steps."""

    _kind = 3

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        c = "PolynomialDecay"
        self.initial_learning_rate = _num(c, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _num(c, "decay_steps", decay_steps, positive=True)
        self.end_learning_rate = _num(c, "end_learning_rate", end_learning_rate)
        self.power = _num(c, "power", power)
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step):
        d, t = self.decay_steps, step
        if self.cycle:
            d = self.decay_steps * (1.0 if step == 0 else math.ceil(step / self.decay_steps))
        else:
            t = min(step, d)
        return (self.initial_learning_rate - self.end_learning_rate) * (1 - t / d) ** self.power + self.end_learning_rate

    def _fields(self):
        return dict(initial=self.initial_learning_rate, decay_steps=self.decay_steps, end=self.end_learning_rate,
                    power=self.power, cycle=self.cycle)

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate, decay_steps=self.decay_steps,
                    end_learning_rate=self.end_learning_rate, power=self.power, cycle=self.cycle, name=self.name)


class CosineDecay(LearningRateSchedule):
    """Cosine decay from initial_learning_rate to alpha * it over decay_steps; with warmup_target,
    first a linear warmup from initial_learning_rate to warmup_target over warmup_steps, then the
    cosine from warmup_target."""

    _kind = 4

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        c = "CosineDecay"
        self.initial_learning_rate = _num(c, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _num(c, "decay_steps", decay_steps, positive=True)
        self.alpha = _num(c, "alpha", alpha)
        self.warmup_target = None if warmup_target is None else _num(c, "warmup_target", warmup_target)
        self.warmup_steps = _num(c, "warmup_steps", warmup_steps)
        if self.warmup_target is not None and self.warmup_steps == 0:
            raise ValueError(f"{c}: warmup_target needs warmup_steps > 0")
        self.name = name

    def _decay(self, t, lr):
        return lr * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * t / self.decay_steps)) + self.alpha)

    def __call__(self, step):
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        t = min(step, self.decay_steps + self.warmup_steps)
        if t < self.warmup_steps:
            return self.initial_learning_rate + (self.warmup_target - self.initial_learning_rate) * t / self.warmup_steps
        return self._decay(t - self.warmup_steps, self.warmup_target)

    def _fields(self):
        f = dict(initial=self.initial_learning_rate, decay_steps=self.decay_steps, alpha=self.alpha)
        if self.warmup_target is not None:
            f.update(warmup_target=self.warmup_target, warmup_steps=self.warmup_steps)
        return f

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate, decay_steps=self.decay_steps, alpha=self.alpha,
                    name=self.name, warmup_target=self.warmup_target, warmup_steps=self.warmup_steps)


class CosineDecayRestarts(LearningRateSchedule):
    """SGDR: cosine decays over first_decay_steps, then periods t_mul times longer, each restart's
    peak m_mul times the last, down to alpha * the peak."""

    _kind = 5

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0,
                 name="SGDRDecay"):
        c = "CosineDecayRestarts"
        self.initial_learning_rate = _num(c, "initial_learning_rate", initial_learning_rate)
        self.first_decay_steps = _num(c, "first_decay_steps", first_decay_steps, positive=True)
        self.t_mul = _num(c, "t_mul", t_mul, positive=True)
        self.m_mul = _num(c, "m_mul", m_mul)
        self.alpha = _num(c, "alpha", alpha)
        self.name = name

    def __call__(self, step):
        f = step / self.first_decay_steps
        if self.t_mul == 1.0:
            i = math.floor(f)
            f -= i
        else:
            i = math.floor(math.log(1 - f * (1 - self.t_mul)) / math.log(self.t_mul))
            f = (f - (1 - self.t_mul ** i) / (1 - self.t_mul)) / self.t_mul ** i
        c = 0.5 * self.m_mul ** i * (1 + math.cos(math.pi * f))
        return self.initial_learning_rate * ((1 - self.alpha) * c + self.alpha)

    def _fields(self):
        return dict(initial=self.initial_learning_rate, decay_steps=self.first_decay_steps, t_mul=self.t_mul,
                    m_mul=self.m_mul, alpha=self.alpha)

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate, first_decay_steps=self.first_decay_steps,
                    t_mul=self.t_mul, m_mul=self.m_mul, alpha=self.alpha, name=self.name)


_CLASSES = {c.__name__: c for c in (ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, CosineDecay,
                                    CosineDecayRestarts)}


def serialize(schedule):
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    try:
        return _CLASSES[config["class_name"]](**config["config"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"learning rate schedule: cannot rebuild {config!r}: {e}") from None
