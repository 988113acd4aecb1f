"""Reshaping layers: Flatten, ZeroPadding2D, Cropping2D."""

import numbers

from .base import Layer, _data_format, _pair



class Flatten(Layer):
    """(H, W, C) -> (H*W*C,), in channels-last order (no data movement)."""

    _core_kind = "Flatten"

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(self.name, data_format)

    def get_config(self):
        return dict(super().get_config(), data_format=self.data_format)


def _sides(name, arg, value):
    """int | (sym_h, sym_w) | ((top, bottom), (left, right)) -> (top, bottom, left, right)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {arg} must be an int, (rows, cols) or ((top, bottom), (left, right)), "
                         f"got {value!r}") from None
    if isinstance(a, numbers.Integral) and isinstance(b, numbers.Integral):
        h, w = _pair(name, arg, (a, b), allow_zero=True)
        return (h, h, w, w)
    t, bo = _pair(name, arg, a, allow_zero=True)
    le, r = _pair(name, arg, b, allow_zero=True)
    return (t, bo, le, r)


class _Window2D(Layer):
    """Zero padding and cropping: four border sizes, (top, bottom, left, right), under one argument."""

    _arg = None

    def __init__(self, sides, data_format=None, **kwargs):
        super().__init__(**kwargs)
        setattr(self, self._arg, _sides(self.name, self._arg, sides))
        self.data_format = _data_format(self.name, data_format)

    def _core_config(self):
        return {self._arg: list(getattr(self, self._arg))}

    def get_config(self):
        t, b, l, r = getattr(self, self._arg)
        return dict(super().get_config(), **{self._arg: [[t, b], [l, r]]}, data_format=self.data_format)


class ZeroPadding2D(_Window2D):
    """Adds rows and columns of zeros around each image: padding=int, (rows, cols) or
    ((top, bottom), (left, right))."""

    _core_kind = "ZeroPadding2D"
    _arg = "padding"

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class Cropping2D(_Window2D):
    """Removes rows and columns at the borders: cropping=int, (rows, cols) or
    ((top, bottom), (left, right))."""

    _core_kind = "Cropping2D"
    _arg = "cropping"

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)
