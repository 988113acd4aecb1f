"""Core layers: Dense, activations, Dropout, Identity."""

import numbers

from .base import Layer, _activation, _add_fused, _initializer, _positive_int



class Dense(Layer):
    """Fully connected layer on the last axis; kernel (in_features, units)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        n = self.name
        self.units = _positive_int(n, "units", units)
        self.activation, self._alpha = _activation(n, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializer(n, "kernel_initializer", kernel_initializer)
        self.bias_initializer = _initializer(n, "bias_initializer", bias_initializer)

    def _can_fuse_relu(self):
        return self.activation == "linear"

    def _add_to(self, net, inputs, seed=0):
        return _add_fused(self, net, "Dense", inputs, dict(
            units=self.units, use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer))

    def get_config(self):
        return dict(super().get_config(), units=self.units, activation=self.activation, use_bias=self.use_bias,
                    kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer)


class Activation(Layer):
    """An activation function as a layer: 'relu', 'leaky_relu', 'sigmoid', 'tanh', 'softmax', 'linear'."""

    _core_kind = "Activation"

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation, self._alpha = _activation(self.name, activation)

    def _core_config(self):
        return dict(activation=self.activation, alpha=self._alpha)

    def _is_plain_relu(self):
        return self.activation == "relu"

    def get_config(self):
        return dict(super().get_config(), activation=self.activation)


class ReLU(Layer):
    """max(x, 0), or with negative_slope a leaky ReLU."""

    _core_kind = "Activation"

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None or threshold != 0.0:
            raise ValueError(f"{self.name}: max_value and threshold are not supported")
        if negative_slope < 0:
            raise ValueError(f"{self.name}: negative_slope must be >= 0, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def _is_plain_relu(self):
        return not self.negative_slope

    def _core_config(self):
        if self.negative_slope:
            return dict(activation="leaky_relu", alpha=self.negative_slope)
        return dict(activation="relu", alpha=0.0)

    def get_config(self):
        return dict(super().get_config(), negative_slope=self.negative_slope)


class LeakyReLU(Layer):
    """x if x > 0 else negative_slope * x (Keras default slope 0.3)."""

    _core_kind = "Activation"

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope < 0:
            raise ValueError(f"{self.name}: negative_slope must be >= 0, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def _core_config(self):
        return dict(activation="leaky_relu", alpha=self.negative_slope)

    def get_config(self):
        return dict(super().get_config(), negative_slope=self.negative_slope)


class Softmax(Layer):
    """Softmax over the last axis."""

    _core_kind = "Activation"

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(f"{self.name}: only axis=-1 is supported, got {axis}")

    def _core_config(self):
        return dict(activation="softmax", alpha=0.0)


class Dropout(Layer):
    """Inverted dropout while training (kept units scaled by 1/(1-rate)); identity otherwise."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            raise TypeError(f"{self.name}: rate must be a float, got {rate!r}")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{self.name}: rate must be in [0, 1), got {rate}")
        if noise_shape is not None:
            raise ValueError(f"{self.name}: noise_shape is not supported")
        self.rate = float(rate)
        self.seed = seed

    def _add_to(self, net, inputs, seed=0):
        s = self.seed if self.seed is not None else seed
        self._effective_seed = int(s) & 0xFFFFFFFFFFFFFFFF
        return net.add_layer("Dropout", self.name, inputs, dict(rate=self.rate, seed=self._effective_seed))

    def get_config(self):
        # The seed the masks were drawn with, so a reloaded model continues the same mask stream.
        return dict(super().get_config(), rate=self.rate, seed=getattr(self, "_effective_seed", self.seed))


class Identity(Layer):
    """Returns its input unchanged (a view: no copy, no kernel)."""

    _core_kind = "Identity"
