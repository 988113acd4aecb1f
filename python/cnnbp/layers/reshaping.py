"""Reshaping layers: Flatten, Reshape, Permute, ZeroPadding2D, Cropping2D, UpSampling2D."""

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


class Reshape(Layer):
    """Per-sample reshape to target_shape (one entry may be -1); a view, no data movement."""

    _core_kind = "Reshape"

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            shape = tuple(int(d) for d in target_shape)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: target_shape must be a tuple of ints, got {target_shape!r}") from None
        if not shape or any(d == 0 or d < -1 for d in shape) or shape.count(-1) > 1:
            raise ValueError(f"{self.name}: target_shape must hold positive sizes and at most one -1, got {shape}")
        self.target_shape = shape

    def _add_to(self, net, inputs, seed=0):
        import math
        in_shape = tuple(net.tensor_shape(inputs[0]))
        total = math.prod(in_shape)
        shape = list(self.target_shape)
        if -1 in shape:
            known = math.prod(d for d in shape if d != -1)
            if total % known:
                raise ValueError(f"{self.name}: cannot reshape {(None,) + in_shape} ({total} values per sample) to "
                                 f"{(None,) + self.target_shape}")
            shape[shape.index(-1)] = total // known
        return net.add_layer("Reshape", self.name, inputs, dict(target_shape=shape))

    def get_config(self):
        return dict(super().get_config(), target_shape=list(self.target_shape))


class Permute(Layer):
    """Reorders the per-sample axes: dims is a permutation of 1..rank (Keras's 1-based form)."""

    _core_kind = "Permute"

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            self.dims = tuple(int(d) for d in dims)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: dims must be a tuple of ints, got {dims!r}") from None
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"{self.name}: dims must be a permutation of 1..{len(self.dims)}, got {self.dims}")

    def _core_config(self):
        return dict(dims=list(self.dims))

    def get_config(self):
        return dict(super().get_config(), dims=list(self.dims))


class UpSampling2D(Layer):
    """Repeats rows and columns by size (nearest), or interpolates (bilinear: TensorFlow's
    half-pixel rule, as Keras)."""

    _core_kind = "UpSampling2D"

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = _pair(self.name, "size", size)
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"{self.name}: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
        self.interpolation = interpolation
        self.data_format = _data_format(self.name, data_format)

    def _core_config(self):
        return dict(size=list(self.size), interpolation=self.interpolation)

    def get_config(self):
        return dict(super().get_config(), size=list(self.size), data_format=self.data_format,
                    interpolation=self.interpolation)


class RepeatVector(Layer):
    """(features,) -> (n, features): the vector repeated n times (a nearest upsampling of it, so
    the backward sums the n copies' gradients)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"{self.name}: n must be an int >= 1, got {n!r}")
        self.n = int(n)

    def _add_to(self, net, inputs, seed=0):
        shape = tuple(net.tensor_shape(inputs[0]))
        if len(shape) != 1:
            raise ValueError(f"{self.name}: expected an input of shape (None, features), got {(None,) + shape}")
        r = net.add_layer("Reshape", f"{self.name}/as_image", inputs, dict(target_shape=[1, 1, shape[0]]))
        u = net.add_layer("UpSampling2D", f"{self.name}/repeat", [r], dict(size=[self.n, 1], interpolation="nearest"))
        return net.add_layer("Reshape", self.name, [u], dict(target_shape=[self.n, shape[0]]))

    def get_config(self):
        return dict(super().get_config(), n=self.n)
