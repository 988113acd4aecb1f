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
