"""Optimizers: Keras names and defaults. The update itself runs in C++ over the network's flat
parameter buffer (formulas in csrc/optim/optim.h). After ``compile``, setting
``optimizer.learning_rate`` changes the rate of the next step (callbacks); a
``cnnbp.optimizers.schedules`` schedule as ``learning_rate`` is evaluated by the C++ step itself.

Every optimizer takes Keras's ``clipnorm`` (each parameter tensor's gradient scaled to norm at
most clipnorm), ``global_clipnorm`` (all of them together) or ``clipvalue`` (each element clipped
to [-v, v]) -- one of the three -- applied after the regularizers' gradients are added.
``weight_decay`` is decoupled everywhere, as in Keras 3: ``p -= learning_rate * weight_decay * p``
before the step. ``SGD(coupled_weight_decay=)`` is the other form (PyTorch's ``SGD(weight_decay=)``,
classic L2 regularisation of every weight): ``coupled_weight_decay * p`` added to the gradient, so
that momentum carries it."""

import math
import numbers
import sys

from . import schedules
from .schedules import LearningRateSchedule

sys.modules[__name__ + ".schedules"] = schedules   # from cnnbp.optimizers.schedules import CosineDecay

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion", "get"]


def _unit(cls, arg, v, closed=False):
    """A float in [0, 1) (or [0, 1] when closed)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (0 <= v <= 1 if closed else 0 <= v < 1):
        raise ValueError(f"{cls}: {arg} must be in [0, 1{']' if closed else ')'}, got {v!r}")
    return float(v)


def _nonneg(cls, arg, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{cls}: {arg} must be a finite number >= 0, got {v!r}")
    return float(v)


_IGNORED = {"use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
            "gradient_accumulation_steps": None, "jit_compile": True}


class Optimizer:
    """Base class: hyperparameters on the Python side, the update in C++ over the flat buffers."""

    def __init__(self, learning_rate, clipnorm=None, clipvalue=None, global_clipnorm=None, **kwargs):
        cls = type(self).__name__
        for k, v in kwargs.items():
            if k not in _IGNORED:
                raise TypeError(f"{cls}: unexpected keyword argument {k!r}")
            if v != _IGNORED[k] and not (k == "jit_compile"):
                raise ValueError(f"{cls}: {k}={v!r} is not supported")
        if isinstance(learning_rate, dict) and "class_name" in learning_rate:   # a saved schedule
            learning_rate = schedules.deserialize(learning_rate)
        self._schedule = None
        if isinstance(learning_rate, LearningRateSchedule):
            self._schedule = learning_rate
            self._lr = float(learning_rate(0))
        else:
            self._lr = _nonneg(cls, "learning_rate", learning_rate)
        clip = {}
        for arg, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if v is not None:
                v = _nonneg(cls, arg, v)
                if v == 0:
                    raise ValueError(f"{cls}: {arg} must be > 0 (or None), got 0")
                clip[arg] = v
        if len(clip) > 1:
            raise ValueError(f"{cls}: only one of clipnorm, clipvalue and global_clipnorm can be set, got "
                             f"{', '.join(clip)}")
        self.clipnorm, self.clipvalue = clip.get("clipnorm"), clip.get("clipvalue")
        self.global_clipnorm = clip.get("global_clipnorm")
        self._nets = []

    @property
    def learning_rate(self):
        """The rate of the next step (a schedule's value at ``iterations``)."""
        if self._schedule is not None:
            return float(self._schedule(self.iterations))
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value):
        if self._schedule is not None:
            raise TypeError(f"{type(self).__name__}: this optimizer was created with a LearningRateSchedule as its "
                            "learning_rate, so its learning rate is not settable (Keras's rule)")
        if isinstance(value, LearningRateSchedule):
            self._schedule = value
            self._lr = float(value(0))
            for net in self._nets:
                self._configure_gradients(net)
            return
        self._lr = _nonneg(type(self).__name__, "learning_rate", value)
        for net in self._nets:
            net.learning_rate = self._lr

    lr = learning_rate

    @property
    def iterations(self):
        return self._nets[-1].iterations if self._nets else 0

    def _attach(self, net):
        self._configure(net)
        self._configure_gradients(net)
        self._nets = [n for n in self._nets if n is not net] + [net]

    def _configure_gradients(self, net):
        net.set_gradient_config(clipnorm=self.clipnorm or 0.0, clipvalue=self.clipvalue or 0.0,
                                global_clipnorm=self.global_clipnorm or 0.0,
                                schedule=self._schedule._spec() if self._schedule is not None else {})

    def _configure(self, net):
        raise NotImplementedError

    def get_config(self):
        lr = schedules.serialize(self._schedule) if self._schedule is not None else self._lr
        cfg = {"name": type(self).__name__, "learning_rate": lr}
        for k in ("clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(self, k) is not None:
                cfg[k] = getattr(self, k)
        return cfg


class SGD(Optimizer):
    """p -= lr * g; with momentum: buf = momentum*buf + g, p -= lr*buf (Nesterov: lr*(g + momentum*buf)).
    weight_decay: decoupled, p -= lr*weight_decay*p first (Keras 3); coupled_weight_decay: adds
    coupled_weight_decay*p to the gradient (L2; PyTorch's SGD(weight_decay=))."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, name="SGD",
                 coupled_weight_decay=0.0, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = _nonneg("SGD", "momentum", momentum)
        if self.momentum > 1:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum}")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.weight_decay = _nonneg("SGD", "weight_decay", weight_decay or 0.0)
        self.coupled_weight_decay = _nonneg("SGD", "coupled_weight_decay", coupled_weight_decay or 0.0)

    def _configure(self, net):
        net.set_sgd(self._lr, self.momentum, self.nesterov, self.weight_decay, self.coupled_weight_decay)

    def get_config(self):
        return dict(super().get_config(), momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay, coupled_weight_decay=self.coupled_weight_decay)


class Adam(Optimizer):
    """Adam with Keras's formula: alpha = lr*sqrt(1-b2^t)/(1-b1^t); p -= alpha*m/(sqrt(v)+epsilon)."""

    _default_decay = None

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 amsgrad=False, name=None, **kwargs):
        super().__init__(learning_rate, **kwargs)
        cls = type(self).__name__
        for arg, v in (("beta_1", beta_1), ("beta_2", beta_2)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < 1:
                raise ValueError(f"{cls}: {arg} must be in [0, 1), got {v!r}")
        if amsgrad:
            raise ValueError(f"{cls}: amsgrad=True is not supported")
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = _nonneg(cls, "epsilon", epsilon)
        wd = self._default_decay if weight_decay is None else weight_decay
        self.weight_decay = _nonneg(cls, "weight_decay", wd or 0.0)

    def _configure(self, net):
        net.set_adam(self._lr, self.beta_1, self.beta_2, self.epsilon, self.weight_decay)

    def get_config(self):
        return dict(super().get_config(), beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                    weight_decay=self.weight_decay)


class AdamW(Adam):
    """Adam with decoupled weight decay: p -= lr*weight_decay*p before the Adam step (Keras default 0.004)."""

    _default_decay = 0.004


class _Adaptive(Optimizer):
    """The optimizers of one C++ pass with per-parameter slots (formulas in csrc/optim/optim.h).
    weight_decay is decoupled, as in Keras: p -= learning_rate * weight_decay * p before the step."""

    _kind = None
    _fields = ()      # the hyperparameters besides learning_rate and weight_decay, in __init__ order

    def __init__(self, learning_rate, weight_decay=None, options=None, **hyper):
        super().__init__(learning_rate, **(options or {}))
        self.weight_decay = _nonneg(type(self).__name__, "weight_decay", weight_decay or 0.0)
        for k, v in hyper.items():
            setattr(self, k, v)

    def _configure(self, net):
        kw = {k: getattr(self, k) for k in self._fields}
        net.set_adaptive(self._kind, self._lr, weight_decay=self.weight_decay, **kw)

    def get_config(self):
        return dict(super().get_config(), weight_decay=self.weight_decay,
                    **{k: getattr(self, k) for k in self._fields})


class RMSprop(_Adaptive):
    """v = rho*v + (1-rho)*g^2; p -= lr*g/sqrt(v + epsilon) (centered: v - mean(g)^2; momentum: plain
    momentum on the increment). Keras's compile() default optimizer."""

    _kind, _fields = "rmsprop", ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None,
                 name="rmsprop", **kwargs):
        super().__init__(learning_rate, weight_decay, kwargs, rho=_unit("RMSprop", "rho", rho, closed=True),
                         momentum=_unit("RMSprop", "momentum", momentum, closed=True),
                         epsilon=_nonneg("RMSprop", "epsilon", epsilon), centered=bool(centered))


class Adagrad(_Adaptive):
    """s += g^2; p -= lr*g/sqrt(s + epsilon), s starting at initial_accumulator_value."""

    _kind, _fields = "adagrad", ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 name="adagrad", **kwargs):
        super().__init__(learning_rate, weight_decay, kwargs,
                         initial_accumulator_value=_nonneg("Adagrad", "initial_accumulator_value",
                                                           initial_accumulator_value),
                         epsilon=_nonneg("Adagrad", "epsilon", epsilon))


class Adadelta(_Adaptive):
    """s = rho*s + (1-rho)*g^2; d = -sqrt(u + eps)/sqrt(s + eps)*g; u = rho*u + (1-rho)*d^2; p += lr*d.
    (learning_rate=1.0 is the paper's form; Keras's default is 0.001.)"""

    _kind, _fields = "adadelta", ("rho", "epsilon")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None, name="adadelta", **kwargs):
        super().__init__(learning_rate, weight_decay, kwargs, rho=_unit("Adadelta", "rho", rho, closed=True),
                         epsilon=_nonneg("Adadelta", "epsilon", epsilon))


class Adamax(_Adaptive):
    """m = b1*m + (1-b1)*g; u = max(b2*u, |g|); p -= lr/(1-b1^t) * m/(u + epsilon)."""

    _kind, _fields = "adamax", ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 name="adamax", **kwargs):
        super().__init__(learning_rate, weight_decay, kwargs, beta_1=_unit("Adamax", "beta_1", beta_1),
                         beta_2=_unit("Adamax", "beta_2", beta_2), epsilon=_nonneg("Adamax", "epsilon", epsilon))


class Nadam(_Adaptive):
    """Adam with Nesterov momentum and Keras's momentum schedule mu_t = beta_1*(1 - 0.5*0.96^t)."""

    _kind, _fields = "nadam", ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 name="nadam", **kwargs):
        super().__init__(learning_rate, weight_decay, kwargs, beta_1=_unit("Nadam", "beta_1", beta_1),
                         beta_2=_unit("Nadam", "beta_2", beta_2), epsilon=_nonneg("Nadam", "epsilon", epsilon))


class Lion(_Adaptive):
    """p -= lr*sign(b1*m + (1-b1)*g); m = b2*m + (1-b2)*g. Use a learning rate 3-10x below Adam's."""

    _kind, _fields = "lion", ("beta_1", "beta_2")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, weight_decay=None, name="lion", **kwargs):
        b1 = _unit("Lion", "beta_1", beta_1, closed=True)
        if b1 == 0:
            raise ValueError("Lion: beta_1 must be in (0, 1], got 0 (that is signSGD)")
        super().__init__(learning_rate, weight_decay, kwargs, beta_1=b1, beta_2=_unit("Lion", "beta_2", beta_2, closed=True))


_CLASSES = (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Lion)
_BY_NAME = {c.__name__.lower(): c for c in _CLASSES}
_BY_CLASS_NAME = {c.__name__: c for c in _CLASSES}   # saved files name the class


def get(identifier):
    """An Optimizer from a name ('sgd', 'adam', 'rmsprop', ...: any class here, any case) or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            names = ", ".join(repr(n) for n in _BY_NAME)
            raise ValueError(f"optimizer: unknown optimizer {identifier!r}; expected one of {names} "
                             "(or a cnnbp.optimizers.Optimizer)")
        return cls()
    raise TypeError(f"optimizer: expected a name or a cnnbp.optimizers.Optimizer, got {type(identifier).__name__}")
