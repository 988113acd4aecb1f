"""Optimizers: Keras names and defaults. The update itself runs in C++ over the network's flat
parameter buffer (formulas in csrc/optim/optim.h). After ``compile``, setting
``optimizer.learning_rate`` changes the rate of the next step (schedules, callbacks)."""

import math
import numbers

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "get"]


def _nonneg(cls, arg, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{cls}: {arg} must be a finite number >= 0, got {v!r}")
    return float(v)


class Optimizer:
    """Base class: hyperparameters on the Python side, the update in C++ over the flat buffers."""

    def __init__(self, learning_rate):
        self._lr = _nonneg(type(self).__name__, "learning_rate", learning_rate)
        self._nets = []

    @property
    def learning_rate(self):
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value):
        self._lr = _nonneg(type(self).__name__, "learning_rate", value)
        for net in self._nets:
            net.learning_rate = self._lr

    lr = learning_rate

    @property
    def iterations(self):
        return self._nets[-1].iterations if self._nets else 0

    def _attach(self, net):
        self._configure(net)
        self._nets = [n for n in self._nets if n is not net] + [net]

    def _configure(self, net):
        raise NotImplementedError

    def get_config(self):
        return {"name": type(self).__name__, "learning_rate": self._lr}


class SGD(Optimizer):
    """p -= lr * g; with momentum: buf = momentum*buf + g, p -= lr*buf (Nesterov: lr*(g + momentum*buf)).
    weight_decay adds weight_decay*p to the gradient (L2)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, name="SGD"):
        super().__init__(learning_rate)
        self.momentum = _nonneg("SGD", "momentum", momentum)
        if self.momentum > 1:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum}")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.weight_decay = _nonneg("SGD", "weight_decay", weight_decay or 0.0)

    def _configure(self, net):
        net.set_sgd(self._lr, self.momentum, self.nesterov, self.weight_decay)

    def get_config(self):
        return dict(super().get_config(), momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay)


class Adam(Optimizer):
    """Adam with Keras's formula: alpha = lr*sqrt(1-b2^t)/(1-b1^t); p -= alpha*m/(sqrt(v)+epsilon)."""

    _default_decay = None

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 amsgrad=False, name=None):
        super().__init__(learning_rate)
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


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get(identifier):
    """An Optimizer from a name ('sgd', 'adam', 'adamw') or an Optimizer instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"optimizer: unknown optimizer {identifier!r}; expected 'sgd', 'adam' or 'adamw' "
                             "(or a cnnbp.optimizers.Optimizer)")
        return cls()
    raise TypeError(f"optimizer: expected a name or a cnnbp.optimizers.Optimizer, got {type(identifier).__name__}")
