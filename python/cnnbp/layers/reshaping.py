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


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image: padding=int, (rows, cols) or
    ((top, bottom), (left, right))."""

    _core_kind = "ZeroPadding2D"

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _sides(self.name, "padding", padding)
        self.data_format = _data_format(self.name, data_format)

    def _core_config(self):
        return dict(padding=list(self.padding))

    def get_config(self):
        p = self.padding
        return dict(super().get_config(), padding=[[p[0], p[1]], [p[2], p[3]]], data_format=self.data_format)


class Cropping2D(Layer):
    """Removes rows and columns at the borders: cropping=int, (rows, cols) or
    ((top, bottom), (left, right))."""

    _core_kind = "Cropping2D"

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _sides(self.name, "cropping", cropping)
        self.data_format = _data_format(self.name, data_format)

    def _core_config(self):
        return dict(cropping=list(self.cropping))

    def get_config(self):
        c = self.cropping
        return dict(super().get_config(), cropping=[[c[0], c[1]], [c[2], c[3]]], data_format=self.data_format)
