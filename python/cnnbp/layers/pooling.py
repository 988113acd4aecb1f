"""Pooling layers: windowed max/average, and global average/max over height and width."""

from .base import Layer, _data_format, _pair, _padding



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
