"""Weight regularizers, Keras's names and defaults: ``Dense(..., kernel_regularizer=L2(1e-4))``.

A regularizer adds ``l1 * sum(|w|) + l2 * sum(w**2)`` over its weight tensor to the loss that
``fit``/``evaluate``/``train_on_batch`` report, and its gradient ``l1 * sign(w) + 2 * l2 * w`` to
the weights' gradient inside the C++ step, before clipping and the update (weights of a frozen
layer are neither penalised nor updated). Layers that take them: ``Dense``, ``Conv1D``,
``Conv2D``, ``Conv2DTranspose`` (``kernel_regularizer``, ``bias_regularizer``),
``DepthwiseConv2D`` (``depthwise_regularizer``, ``bias_regularizer``), ``SeparableConv2D``
(``depthwise_regularizer``, ``pointwise_regularizer``, ``bias_regularizer``)."""

import math
import numbers

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize"]


def _coef(cls, arg, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{cls}: {arg} must be a finite number >= 0, got {v!r}")
    return float(v)


class Regularizer:
    l1 = 0.0
    l2 = 0.0

    def __call__(self, w):
        """The penalty of weights w (numpy), as the step adds it."""
        import numpy as np
        w = np.asarray(w, dtype=np.float64)
        return float(self.l1 * np.abs(w).sum() + self.l2 * np.square(w).sum())

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class L1(Regularizer):
    def __init__(self, l1=0.01):
        self.l1 = _coef("L1", "l1", l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    def __init__(self, l2=0.01):
        self.l2 = _coef("L2", "l2", l2)

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _coef("L1L2", "l1", l1)
        self.l2 = _coef("L1L2", "l2", l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def serialize(reg):
    return {"class_name": type(reg).__name__, "config": reg.get_config()}


def get(identifier, who="regularizer"):
    """A Regularizer from an instance, a name ('l1', 'l2', 'l1_l2': Keras's defaults) or a saved
    {'class_name', 'config'}; None stays None."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _NAMES:
        return _NAMES[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    raise ValueError(f"{who}: expected None, 'l1', 'l2', 'l1_l2' or a cnnbp.regularizers.Regularizer, got "
                     f"{identifier!r} (callables are not supported: the penalty and its gradient run in C++)")
