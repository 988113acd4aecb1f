"""Layers: Keras names, arguments and defaults.

A layer object is a specification until its model is built; then its weights live in the C++
network's flat parameter buffer, and ``layer.kernel`` / ``layer.bias`` are numpy views of it.
Layers are called on symbolic tensors for the functional style::

    x = Input((28, 28, 1)); y = Conv2D(32, 3, activation="relu")(x); ...; Model(x, y)
"""

import numbers

import numpy as np

from ._naming import snake, unique_name

__all__ = [
    "Layer", "Input", "InputLayer", "Conv2D", "MaxPooling2D", "MaxPool2D", "AveragePooling2D",
    "AvgPool2D", "GlobalAveragePooling2D", "GlobalAvgPool2D", "Flatten", "Dense", "Activation",
    "ReLU", "LeakyReLU", "Softmax", "Dropout",
]

_ACTIVATIONS = {
    None: ("linear", 0.0), "linear": ("linear", 0.0), "relu": ("relu", 0.0),
    "leaky_relu": ("leaky_relu", 0.2), "sigmoid": ("sigmoid", 0.0), "tanh": ("tanh", 0.0),
    "softmax": ("softmax", 0.0),
}
_INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                 "lecun_normal", "zeros", "ones")


def _activation(name, act):
    key = act
    if isinstance(act, str):
        key = act.lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"{name}: unknown activation {act!r}; expected one of "
                         "None, 'linear', 'relu', 'leaky_relu', 'sigmoid', 'tanh', 'softmax'")
    return _ACTIVATIONS[key]


def _fusable(act):
    """The activation the C++ layer applies itself. softmax and sigmoid stay layers of their own,
    so that with cross-entropy they fold into the loss (the stable from-logits form)."""
    return "linear" if act in ("softmax", "sigmoid") else act


def _initializer(name, arg, value):
    if value is None:
        value = "zeros"
    if not isinstance(value, str):
        value = getattr(value, "name", None) or snake(type(value).__name__)
    v = value.lower()
    if v not in _INITIALIZERS:
        raise ValueError(f"{name}: unknown {arg} {value!r}; expected one of {', '.join(_INITIALIZERS)}")
    return v


def _pair(name, arg, value, allow_zero=False):
    """int or (int, int) -> (int, int), positive."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {arg} must be an int or a pair of ints, got {value!r}") from None
    for v in (a, b):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise TypeError(f"{name}: {arg} must contain ints, got {value!r}")
        if v < (0 if allow_zero else 1):
            raise ValueError(f"{name}: {arg} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
    return int(a), int(b)


def _padding(name, padding, allow_explicit=True):
    """'valid' | 'same' | int | (ph, pw) | ((top, bottom), (left, right)) -> (mode, pads)."""
    if isinstance(padding, str):
        p = padding.lower()
        if p not in ("valid", "same"):
            raise ValueError(f"{name}: padding must be 'valid' or 'same'"
                             f"{' or explicit sizes' if allow_explicit else ''}, got {padding!r}")
        return p, (0, 0, 0, 0)
    if not allow_explicit:
        raise ValueError(f"{name}: padding must be 'valid' or 'same', got {padding!r}")
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        if padding < 0:
            raise ValueError(f"{name}: padding must be non-negative, got {padding}")
        return "explicit", (int(padding),) * 4
    try:
        a, b = padding
        if isinstance(a, numbers.Integral) and isinstance(b, numbers.Integral):
            (a, b) = _pair(name, "padding", (a, b), allow_zero=True)
            return "explicit", (a, a, b, b)
        (t, bo), (le, r) = a, b
        t, bo = _pair(name, "padding", (t, bo), allow_zero=True)
        le, r = _pair(name, "padding", (le, r), allow_zero=True)
        return "explicit", (t, bo, le, r)
    except (TypeError, ValueError) as e:
        if isinstance(e, ValueError) and name in str(e):
            raise
        raise ValueError(f"{name}: padding must be 'valid', 'same', an int, (ph, pw) or "
                         f"((top, bottom), (left, right)), got {padding!r}") from None


def _data_format(name, value):
    """None (the default, channels_last) or an explicit choice; the model checks they agree."""
    if value is None:
        return None
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"{name}: data_format must be 'channels_last' or 'channels_first', got {value!r}")
    return value


class KerasTensor:
    """A symbolic tensor of the functional API: which layer made it from which tensor."""

    def __init__(self, shape, layer=None, parent=None, name=None):
        self.shape = shape
        self._layer = layer
        self._parent = parent
        self.name = name

    def __repr__(self):
        return f"<KerasTensor shape={self.shape} name={self.name}>"


class Layer:
    """Base layer. Subclasses add themselves to the C++ network in ``_add_to``."""

    _trainable_kinds = ()

    def __init__(self, name=None, input_shape=None, dtype=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {sorted(kwargs)}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        self.name = name or unique_name(snake(type(self).__name__))
        self._input_shape_arg = None if input_shape is None else _shape_tuple(self.name, input_shape)
        self._net = None
        self._core_index = []      # indices of the C++ layers this layer became
        self._params = {}          # name -> (offset, shape)
        self.input_shape = None
        self.output_shape = None
        self.data_format = None  # layers with a data_format argument set it
        self.trainable = True

    # functional API
    def __call__(self, inputs):
        if isinstance(inputs, (list, tuple)):
            raise ValueError(f"{self.name}: layers take a single input; branches and merges of several "
                             "tensors are not supported yet (the model must be a chain)")
        if not isinstance(inputs, KerasTensor):
            raise TypeError(f"{self.name}: expected a symbolic tensor from Input(...) or another layer, "
                            f"got {type(inputs).__name__}")
        return KerasTensor(None, layer=self, parent=inputs, name=self.name)

    def _add_to(self, net, seed=0):
        raise NotImplementedError

    def _bind(self, net, first, last):
        self._net = net
        self._core_index = list(range(first, last))
        info = net.layer_info()
        self._params = {}
        for i in self._core_index:
            for pname, shape, offset, size in info[i]["params"]:
                self._params[pname] = (offset, tuple(shape))
        self.input_shape = (None,) + tuple(info[first]["input_shape"])
        self.output_shape = (None,) + tuple(info[last - 1]["output_shape"])

    # weights
    @property
    def weights(self):
        """Numpy views of this layer's weights in the C++ buffer (kernel first, then bias)."""
        if self._net is None:
            return []
        return [self._net.param_view(off, list(shape)) for off, shape in self._params.values()]

    @property
    def kernel(self):
        return self._view("kernel")

    @property
    def bias(self):
        return self._view("bias")

    def _view(self, pname, grad=False):
        if self._net is None:
            raise ValueError(f"{self.name}: the layer is not built yet (its model has no input shape)")
        if pname not in self._params:
            raise AttributeError(f"{self.name} has no {pname}")
        off, shape = self._params[pname]
        return self._net.param_view(off, list(shape), grad)

    def get_weights(self):
        """Copies of this layer's weights (kernel, then bias)."""
        return [np.array(w) for w in self.weights]

    def set_weights(self, weights):
        """Write this layer's weights (shapes and dtypes checked first)."""
        current = self.weights
        if len(weights) != len(current):
            raise ValueError(f"{self.name}: expected {len(current)} weight arrays, got {len(weights)}")
        for (pname, (_, shape)), w, dst in zip(self._params.items(), weights, current):
            w = np.asarray(w)
            if w.shape != shape:
                raise ValueError(f"{self.name}: expected {pname} of shape {shape}, got {w.shape}")
            if not np.issubdtype(w.dtype, np.number):
                raise TypeError(f"{self.name}: {pname} must be numeric, got dtype {w.dtype}")
            dst[...] = w

    def count_params(self):
        """Number of parameters of this layer."""
        return int(sum(int(np.prod(s)) for _, s in self._params.values()))

    def get_config(self):
        """The constructor arguments that rebuild this layer (JSON-compatible)."""
        return {"name": self.name}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def _shape_tuple(name, shape):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{name}: shape must be a tuple of ints, got {shape!r}") from None
    if len(shape) == 0:
        raise ValueError(f"{name}: shape must have at least one axis, got ()")
    for d in shape:
        if d is None:
            raise ValueError(f"{name}: every axis of the input shape must be known, got {shape} "
                             "(the batch axis is not part of the shape)")
        if not isinstance(d, numbers.Integral) or isinstance(d, bool):
            raise TypeError(f"{name}: shape must contain ints, got {shape!r}")
        if d <= 0:
            raise ValueError(f"{name}: shape must be positive, got {shape}")
    return tuple(int(d) for d in shape)


class InputLayer(Layer):
    """The model input; ``Input(shape)`` returns its symbolic tensor."""

    def __init__(self, shape=None, batch_size=None, name=None, input_shape=None, dtype=None, **kwargs):
        super().__init__(name=name or unique_name("input_layer"), **kwargs)
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ValueError(f"{self.name}: shape is required, e.g. Input((28, 28, 1))")
        self.shape = _shape_tuple(self.name, shape)
        self._input_shape_arg = self.shape
        self.batch_size = batch_size
        self.output = KerasTensor((None,) + self.shape, layer=self, parent=None, name=self.name)
        self.input_shape = self.output_shape = (None,) + self.shape

    def _add_to(self, net, seed=0):
        pass


def Input(shape=None, batch_size=None, name=None, dtype=None, **kwargs):
    """A symbolic model input of the given per-sample shape (no batch axis)."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, dtype=dtype, **kwargs).output


class Conv2D(Layer):
    """2D convolution over NHWC input; kernel (kh, kw, in_channels, filters)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        n = self.name
        if not isinstance(filters, numbers.Integral) or isinstance(filters, bool):
            raise TypeError(f"{n}: filters must be an int, got {filters!r}")
        if filters <= 0:
            raise ValueError(f"{n}: filters must be positive, got {filters}")
        self.filters = int(filters)
        self.kernel_size = _pair(n, "kernel_size", kernel_size)
        self.strides = _pair(n, "strides", strides)
        self.dilation_rate = _pair(n, "dilation_rate", dilation_rate)
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise ValueError(f"{n}: strides > 1 together with dilation_rate > 1 is not supported (as Keras)")
        self.padding, self._pads = _padding(n, padding)
        self.data_format = _data_format(n, data_format)
        self.activation, self._alpha = _activation(n, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializer(n, "kernel_initializer", kernel_initializer)
        self.bias_initializer = _initializer(n, "bias_initializer", bias_initializer)

    def _add_to(self, net, seed=0):
        fused = _fusable(self.activation)
        net.add_conv2d(self.name, self.filters, self.kernel_size, self.strides, self.dilation_rate,
                       self.padding, self._pads, self.use_bias, self.kernel_initializer, self.bias_initializer,
                       fused, self._alpha)
        if fused != self.activation:
            net.add_activation(f"{self.name}/{self.activation}", self.activation, self._alpha)

    def get_config(self):
        pad = self.padding if self.padding != "explicit" else [list(self._pads[:2]), list(self._pads[2:])]
        return dict(super().get_config(), filters=self.filters, kernel_size=list(self.kernel_size),
                    strides=list(self.strides), padding=pad, data_format=self.data_format,
                    dilation_rate=list(self.dilation_rate), activation=self.activation, use_bias=self.use_bias,
                    kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer)


class _Pool2D(Layer):
    _max = True

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        n = self.name
        self.pool_size = _pair(n, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _pair(n, "strides", strides)
        self.padding, _ = _padding(n, padding, allow_explicit=False)
        self.data_format = _data_format(n, data_format)

    def _add_to(self, net, seed=0):
        net.add_pool2d(self.name, self._max, self.pool_size, self.strides, self.padding)

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


class GlobalAveragePooling2D(Layer):
    """Mean over height and width: (H, W, C) -> (C,)."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(self.name, data_format)
        if keepdims:
            raise ValueError(f"{self.name}: keepdims=True is not supported")

    def _add_to(self, net, seed=0):
        net.add_global_avg_pool2d(self.name)

    def get_config(self):
        return dict(super().get_config(), data_format=self.data_format)


GlobalAvgPool2D = GlobalAveragePooling2D


class Flatten(Layer):
    """(H, W, C) -> (H*W*C,), in channels-last order (no data movement)."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(self.name, data_format)

    def _add_to(self, net, seed=0):
        net.add_flatten(self.name)

    def get_config(self):
        return dict(super().get_config(), data_format=self.data_format)


class Dense(Layer):
    """Fully connected layer on the last axis; kernel (in_features, units)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        n = self.name
        if not isinstance(units, numbers.Integral) or isinstance(units, bool):
            raise TypeError(f"{n}: units must be an int, got {units!r}")
        if units <= 0:
            raise ValueError(f"{n}: units must be positive, got {units}")
        self.units = int(units)
        self.activation, self._alpha = _activation(n, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializer(n, "kernel_initializer", kernel_initializer)
        self.bias_initializer = _initializer(n, "bias_initializer", bias_initializer)

    def _add_to(self, net, seed=0):
        fused = _fusable(self.activation)
        net.add_dense(self.name, self.units, self.use_bias, self.kernel_initializer, self.bias_initializer,
                      fused, self._alpha)
        if fused != self.activation:
            net.add_activation(f"{self.name}/{self.activation}", self.activation, self._alpha)

    def get_config(self):
        return dict(super().get_config(), units=self.units, activation=self.activation, use_bias=self.use_bias,
                    kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer)


class Activation(Layer):
    """An activation function as a layer: 'relu', 'leaky_relu', 'sigmoid', 'tanh', 'softmax', 'linear'."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation, self._alpha = _activation(self.name, activation)

    def _add_to(self, net, seed=0):
        net.add_activation(self.name, self.activation, self._alpha)

    def get_config(self):
        return dict(super().get_config(), activation=self.activation)


class ReLU(Layer):
    """max(x, 0), or with negative_slope a leaky ReLU."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None or threshold != 0.0:
            raise ValueError(f"{self.name}: max_value and threshold are not supported")
        if negative_slope < 0:
            raise ValueError(f"{self.name}: negative_slope must be >= 0, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def _add_to(self, net, seed=0):
        if self.negative_slope:
            net.add_activation(self.name, "leaky_relu", self.negative_slope)
        else:
            net.add_activation(self.name, "relu", 0.0)

    def get_config(self):
        return dict(super().get_config(), negative_slope=self.negative_slope)


class LeakyReLU(Layer):
    """x if x > 0 else negative_slope * x (Keras default slope 0.3)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope < 0:
            raise ValueError(f"{self.name}: negative_slope must be >= 0, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def _add_to(self, net, seed=0):
        net.add_activation(self.name, "leaky_relu", self.negative_slope)

    def get_config(self):
        return dict(super().get_config(), negative_slope=self.negative_slope)


class Softmax(Layer):
    """Softmax over the last axis."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(f"{self.name}: only axis=-1 is supported, got {axis}")

    def _add_to(self, net, seed=0):
        net.add_activation(self.name, "softmax", 0.0)


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

    def _add_to(self, net, seed=0):
        s = self.seed if self.seed is not None else seed
        self._effective_seed = int(s) & 0xFFFFFFFFFFFFFFFF
        net.add_dropout(self.name, self.rate, self._effective_seed)

    def get_config(self):
        # The seed the masks were drawn with, so a reloaded model continues the same mask stream.
        return dict(super().get_config(), rate=self.rate, seed=getattr(self, "_effective_seed", self.seed))
