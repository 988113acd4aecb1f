"""Pooling layers: windowed max/average, and global average/max over height and width."""

from .base import Layer, _add_as_1d, _data_format, _int1, _pair, _padding



class _Pool2D(Layer):
    _max = True

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        n = self.name
        self.pool_size = _pair(n, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _pair(n, "strides", strides)
        self.padding, _ = _padding(n, padding, allow_explicit=False)
        self.data_format = _data_format(n, data_format)

    def _add_to(self, net, inputs, seed=0):
        return net.add_layer("MaxPooling2D" if self._max else "AveragePooling2D", self.name, inputs,
                             dict(pool_size=list(self.pool_size), strides=list(self.strides), padding=self.padding))

    def get_config(self):
        return dict(super().get_config(), pool_size=list(self.pool_size), strides=list(self.strides),
                    padding=self.padding, data_format=self.data_format)


class MaxPooling2D(_Pool2D):
    """Max pooling; the gradient goes to the arg-max of each window; NaN propagates."""
    _max = True


class AveragePooling2D(_Pool2D):
    """Average pooling; with 'same' padding the padded positions are not counted."""
    _max = False


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D


class _GlobalPool2D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(self.name, data_format)
        if keepdims:
            raise ValueError(f"{self.name}: keepdims=True is not supported")

    def get_config(self):
        return dict(super().get_config(), data_format=self.data_format)


class GlobalAveragePooling2D(_GlobalPool2D):
    """Mean over height and width: (H, W, C) -> (C,)."""
    _core_kind = "GlobalAveragePooling2D"


class GlobalMaxPooling2D(_GlobalPool2D):
    """Maximum over height and width: (H, W, C) -> (C,); the gradient goes to the arg-max."""
    _core_kind = "GlobalMaxPooling2D"


GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D


class _Pool1D(Layer):
    _max = True

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        n = self.name
        self.pool_size = _int1(n, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _int1(n, "strides", strides)
        self.padding, _ = _padding(n, padding, allow_explicit=False)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{n}: only data_format='channels_last' (steps, channels) is supported")

    def _add_to(self, net, inputs, seed=0):
        return _add_as_1d(self, net, inputs, lambda ins: net.add_layer(
            "MaxPooling2D" if self._max else "AveragePooling2D", self.name, ins,
            dict(pool_size=[1, self.pool_size], strides=[1, self.strides], padding=self.padding)))

    def get_config(self):
        return dict(super().get_config(), pool_size=self.pool_size, strides=self.strides, padding=self.padding)


class MaxPooling1D(_Pool1D):
    """Max pooling over steps of (steps, channels)."""
    _max = True


class AveragePooling1D(_Pool1D):
    """Average pooling over steps of (steps, channels); with 'same' the padded positions are not counted."""
    _max = False


class _GlobalPool1D(Layer):
    _kind = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if keepdims:
            raise ValueError(f"{self.name}: keepdims=True is not supported")
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{self.name}: only data_format='channels_last' (steps, channels) is supported")

    def _add_to(self, net, inputs, seed=0):
        return _add_as_1d(self, net, inputs, lambda ins: net.add_layer(self._kind, self.name, ins, {}))


class GlobalAveragePooling1D(_GlobalPool1D):
    """Mean over steps: (steps, channels) -> (channels,)."""
    _kind = "GlobalAveragePooling2D"


class GlobalMaxPooling1D(_GlobalPool1D):
    """Maximum over steps: (steps, channels) -> (channels,)."""
    _kind = "GlobalMaxPooling2D"


MaxPool1D = MaxPooling1D
AvgPool1D = AveragePooling1D
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalMaxPool1D = GlobalMaxPooling1D
