"""Core layers: Dense, activations, Dropout, Identity."""

import math
import numbers

from .base import Layer, _activation, _add_fused, _initializer, _positive_int



class Dense(Layer):
    """Fully connected layer on the last axis; kernel (in_features, units)."""

    _regularizable = ("kernel", "bias")

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
    """An activation function as a layer: any of Keras's names that cnnbp has ('relu', 'gelu',
    'swish', 'relu6', ...: see cnnbp.layers.base._ACTIVATIONS)."""

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
        if threshold != 0.0:
            raise ValueError(f"{self.name}: threshold is not supported")
        if negative_slope < 0:
            raise ValueError(f"{self.name}: negative_slope must be >= 0, got {negative_slope}")
        if max_value is not None:
            if isinstance(max_value, bool) or not isinstance(max_value, numbers.Real) or not max_value > 0 \
                    or not math.isfinite(max_value):
                raise ValueError(f"{self.name}: max_value must be a number > 0, got {max_value!r}")
            if negative_slope:
                raise ValueError(f"{self.name}: max_value together with negative_slope is not supported")
        self.negative_slope = float(negative_slope)
        self.max_value = None if max_value is None else float(max_value)

    def _is_plain_relu(self):
        return not self.negative_slope and self.max_value is None

    def _core_config(self):
        if self.max_value is not None:
            return dict(activation="relu_max", alpha=self.max_value)   # ReLU(6.0) is relu6
        if self.negative_slope:
            return dict(activation="leaky_relu", alpha=self.negative_slope)
        return dict(activation="relu", alpha=0.0)

    def get_config(self):
        cfg = dict(super().get_config(), negative_slope=self.negative_slope)
        if self.max_value is not None:
            cfg["max_value"] = self.max_value
        return cfg


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


class ELU(Layer):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    _core_kind = "Activation"

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha):
            raise ValueError(f"{self.name}: alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def _core_config(self):
        return dict(activation="elu", alpha=self.alpha)

    def get_config(self):
        return dict(super().get_config(), alpha=self.alpha)


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


class SpatialDropout2D(Dropout):
    """Dropout of whole channels: per sample, each channel of an (H, W, C) input is kept (scaled by
    1/(1-rate)) or zeroed as one, while training; identity otherwise."""

    def _add_to(self, net, inputs, seed=0):
        s = self.seed if self.seed is not None else seed
        self._effective_seed = int(s) & 0xFFFFFFFFFFFFFFFF
        return net.add_layer("SpatialDropout2D", self.name, inputs, dict(rate=self.rate, seed=self._effective_seed))


class GaussianNoise(Layer):
    """Adds zero-mean Gaussian noise of the given stddev while training; identity otherwise."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(stddev, bool) or not isinstance(stddev, numbers.Real) or not math.isfinite(stddev) \
                or stddev < 0:
            raise ValueError(f"{self.name}: stddev must be a finite number >= 0, got {stddev!r}")
        self.stddev = float(stddev)
        self.seed = seed

    def _add_to(self, net, inputs, seed=0):
        s = self.seed if self.seed is not None else seed
        self._effective_seed = int(s) & 0xFFFFFFFFFFFFFFFF
        return net.add_layer("GaussianNoise", self.name, inputs, dict(stddev=self.stddev, seed=self._effective_seed))

    def get_config(self):
        return dict(super().get_config(), stddev=self.stddev, seed=getattr(self, "_effective_seed", self.seed))


class PReLU(Layer):
    """x if x > 0 else alpha * x with a learned alpha per element of a sample, shared along
    shared_axes (1-based; shared_axes=[1, 2] gives one slope per channel of an image)."""

    _core_kind = "PReLU"

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None,
                 **kwargs):
        super().__init__(**kwargs)
        if alpha_regularizer is not None or alpha_constraint is not None:
            raise ValueError(f"{self.name}: alpha_regularizer and alpha_constraint are not supported")
        self.alpha_initializer = _initializer(self.name, "alpha_initializer", alpha_initializer)
        if shared_axes is None:
            shared_axes = []
        elif isinstance(shared_axes, numbers.Integral):
            shared_axes = [shared_axes]
        try:
            self.shared_axes = sorted({int(a) for a in shared_axes})
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: shared_axes must be a list of axes, got {shared_axes!r}") from None

    def _core_config(self):
        return dict(alpha_initializer=self.alpha_initializer, shared_axes=list(self.shared_axes))

    def get_config(self):
        return dict(super().get_config(), alpha_initializer=self.alpha_initializer,
                    shared_axes=list(self.shared_axes) or None)


class Identity(Layer):
    """Returns its input unchanged (a view: no copy, no kernel)."""

    _core_kind = "Identity"
