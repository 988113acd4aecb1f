"""Layers that merge branches: elementwise Add, Subtract, Multiply, Average, Maximum, and
Concatenate along the channel axis. Each takes a list of tensors: ``Add()([a, b])``."""

from .base import Layer



class _Merge(Layer):
    _min_inputs = 2
    _max_inputs = 1 << 20

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._core_kind = type(self).__name__

    def _can_fuse_relu(self):
        return type(self) in (Add, Subtract, Multiply, Average)  # not Maximum: its backward reads the output

    def _core_config(self):
        return dict(activation=self._fused_act) if self._fused_act else {}


class Add(_Merge):
    """Elementwise sum of same-shaped inputs (the residual connection)."""


class Subtract(_Merge):
    """inputs[0] - inputs[1]."""
    _max_inputs = 2


class Multiply(_Merge):
    """Elementwise product."""


class Average(_Merge):
    """Elementwise mean."""


class Maximum(_Merge):
    """Elementwise maximum; the gradient goes to the first input holding it."""


class Concatenate(_Merge):
    """Concatenation along the last axis (channels): shapes must match in every other axis."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def _can_fuse_relu(self):
        return False

    def _core_config(self):
        return dict(axis=self.axis)

    def get_config(self):
        return dict(super().get_config(), axis=self.axis)


# Keras's functional spellings: add([a, b]) is Add()([a, b]).
def add(inputs, **kwargs):
    """Add()(inputs)."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """Subtract()(inputs)."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Multiply()(inputs)."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Average()(inputs)."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Maximum()(inputs)."""
    return Maximum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Concatenate(axis)(inputs)."""
    return Concatenate(axis=axis, **kwargs)(inputs)
