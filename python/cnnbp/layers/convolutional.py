"""Convolution layers."""

from .base import (Layer, _activation, _add_as_1d, _add_fused, _data_format, _initializer, _int1, _pair, _padding,
                   _positive_int)


def _conv2d_args(layer, kernel_size, strides, dilation_rate, data_format, activation, use_bias, bias_initializer):
    """The arguments every 2-D convolution layer shares, checked and stored on it."""
    n = layer.name
    layer.kernel_size = _pair(n, "kernel_size", kernel_size)
    layer.strides = _pair(n, "strides", strides)
    layer.dilation_rate = _pair(n, "dilation_rate", dilation_rate)
    if layer.strides != (1, 1) and layer.dilation_rate != (1, 1):
        raise ValueError(f"{n}: strides > 1 together with dilation_rate > 1 is not supported (as Keras)")
    layer.data_format = _data_format(n, data_format)
    layer.activation, layer._alpha = _activation(n, activation)
    layer.use_bias = bool(use_bias)
    layer.bias_initializer = _initializer(n, "bias_initializer", bias_initializer)


def _padding_config(layer):
    return layer.padding if layer.padding != "explicit" else [list(layer._pads[:2]), list(layer._pads[2:])]


class Conv2D(Layer):
    """2D convolution over NHWC input; kernel (kh, kw, in_channels, filters)."""

    _regularizable = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        n = self.name
        self.filters = _positive_int(n, "filters", filters)
        self.groups = _positive_int(n, "groups", groups)
        if self.filters % self.groups:
            raise ValueError(f"{n}: groups ({self.groups}) must divide filters ({self.filters})")
        _conv2d_args(self, kernel_size, strides, dilation_rate, data_format, activation, use_bias, bias_initializer)
        self.padding, self._pads = _padding(n, padding)
        self.kernel_initializer = _initializer(n, "kernel_initializer", kernel_initializer)

    def _can_fuse_relu(self):
        return self.activation == "linear"

    def _conv_config(self):
        return dict(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                    dilation=list(self.dilation_rate), padding=self.padding, pads=list(self._pads),
                    use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                    bias_initializer=self.bias_initializer)

    def _add_to(self, net, inputs, seed=0):
        if self.groups > 1:   # kernel (kh, kw, in_channels / groups, filters), as Keras
            return _add_fused(self, net, "GroupedConv2D", inputs, dict(self._conv_config(), groups=self.groups))
        return _add_fused(self, net, "Conv2D", inputs, self._conv_config())

    def get_config(self):
        pad = _padding_config(self)
        cfg = dict(super().get_config(), filters=self.filters, kernel_size=list(self.kernel_size),
                   strides=list(self.strides), padding=pad, data_format=self.data_format,
                   dilation_rate=list(self.dilation_rate), activation=self.activation, use_bias=self.use_bias,
                   kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer)
        if self.groups > 1:
            cfg["groups"] = self.groups
        return cfg


class DepthwiseConv2D(Layer):
    """Each input channel convolved with its own depth_multiplier filters: output channel
    c * depth_multiplier + j reads input channel c only. Kernel (kh, kw, in_channels,
    depth_multiplier), bias (in_channels * depth_multiplier,), as Keras."""

    _regularizable = ("depthwise", "bias")

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        n = self.name
        _conv2d_args(self, kernel_size, strides, dilation_rate, data_format, activation, use_bias, bias_initializer)
        self.padding, self._pads = _padding(n, padding)
        self.depth_multiplier = _positive_int(n, "depth_multiplier", depth_multiplier)
        self.depthwise_initializer = _initializer(n, "depthwise_initializer", depthwise_initializer)

    def _can_fuse_relu(self):
        return self.activation == "linear"

    def _add_to(self, net, inputs, seed=0):
        return _add_fused(self, net, "GroupedConv2D", inputs, dict(
            depthwise=True, depth_multiplier=self.depth_multiplier, kernel_size=list(self.kernel_size),
            strides=list(self.strides), dilation=list(self.dilation_rate), padding=self.padding,
            pads=list(self._pads), use_bias=self.use_bias, kernel_initializer=self.depthwise_initializer,
            bias_initializer=self.bias_initializer))

    def _bind(self, net, first, last):
        super()._bind(net, first, last)
        self._params["depthwise_kernel"] = self._params.pop("kernel")
        if "bias" in self._params:   # Keras's order: depthwise_kernel, bias
            self._params["bias"] = self._params.pop("bias")

    @property
    def kernel(self):
        return self._view("depthwise_kernel")

    def get_config(self):
        pad = _padding_config(self)
        return dict(super().get_config(), kernel_size=list(self.kernel_size), strides=list(self.strides), padding=pad,
                    depth_multiplier=self.depth_multiplier, data_format=self.data_format,
                    dilation_rate=list(self.dilation_rate), activation=self.activation, use_bias=self.use_bias,
                    depthwise_initializer=self.depthwise_initializer, bias_initializer=self.bias_initializer)


class SeparableConv2D(Layer):
    """A depthwise convolution (no bias) followed by a 1x1 convolution to filters (with the bias
    and activation): weights depthwise_kernel (kh, kw, in, m), pointwise_kernel (1, 1, in*m,
    filters), bias (filters,), as Keras."""

    _regularizable = ("depthwise", "pointwise", "bias")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None, dilation_rate=(1, 1),
                 depth_multiplier=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        n = self.name
        self.filters = _positive_int(n, "filters", filters)
        _conv2d_args(self, kernel_size, strides, dilation_rate, data_format, activation, use_bias, bias_initializer)
        self.padding, self._pads = _padding(n, padding)
        self.depth_multiplier = _positive_int(n, "depth_multiplier", depth_multiplier)
        self.depthwise_initializer = _initializer(n, "depthwise_initializer", depthwise_initializer)
        self.pointwise_initializer = _initializer(n, "pointwise_initializer", pointwise_initializer)

    def _can_fuse_relu(self):
        return self.activation == "linear"

    def _add_to(self, net, inputs, seed=0):
        d = net.add_layer("GroupedConv2D", f"{self.name}/depthwise", inputs, dict(
            depthwise=True, depth_multiplier=self.depth_multiplier, kernel_size=list(self.kernel_size),
            strides=list(self.strides), dilation=list(self.dilation_rate), padding=self.padding,
            pads=list(self._pads), use_bias=False, kernel_initializer=self.depthwise_initializer))
        return _add_fused(self, net, "Conv2D", [d], dict(
            filters=self.filters, kernel_size=[1, 1], use_bias=self.use_bias,
            kernel_initializer=self.pointwise_initializer, bias_initializer=self.bias_initializer))

    def _bind(self, net, first, last):
        info = net.layer_info()
        super()._bind(net, first, last)
        self._params = {}
        for i, pname in zip((first, first + 1), ("depthwise_kernel", "pointwise_kernel")):
            _, shape, offset, _ = info[i]["params"][0]
            self._params[pname] = (offset, tuple(shape))
        if self.use_bias:
            _, shape, offset, _ = info[first + 1]["params"][1]
            self._params["bias"] = (offset, tuple(shape))

    def get_config(self):
        pad = _padding_config(self)
        return dict(super().get_config(), filters=self.filters, kernel_size=list(self.kernel_size),
                    strides=list(self.strides), padding=pad, data_format=self.data_format,
                    dilation_rate=list(self.dilation_rate), depth_multiplier=self.depth_multiplier,
                    activation=self.activation, use_bias=self.use_bias,
                    depthwise_initializer=self.depthwise_initializer,
                    pointwise_initializer=self.pointwise_initializer, bias_initializer=self.bias_initializer)


class Conv2DTranspose(Layer):
    """Transposed 2D convolution (the adjoint of a Conv2D: upsampling by its strides); kernel
    (kh, kw, filters, in_channels), as Keras. Output size without output_padding: valid
    H*s + max(k_eff - s, 0), same H*s; with output_padding op (< strides): (H-1)*s + k_eff -
    2*pad + op, pad = k_eff // 2 for same, 0 for valid."""

    _regularizable = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        n = self.name
        self.filters = _positive_int(n, "filters", filters)
        _conv2d_args(self, kernel_size, strides, dilation_rate, data_format, activation, use_bias, bias_initializer)
        if padding not in ("valid", "same"):
            raise ValueError(f"{n}: padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding
        self.output_padding = None if output_padding is None else _pair(n, "output_padding", output_padding,
                                                                        allow_zero=True)
        if self.output_padding is not None and any(o >= s for o, s in zip(self.output_padding, self.strides)):
            raise ValueError(f"{n}: output_padding {self.output_padding} must be smaller than the strides "
                             f"{self.strides}")
        self.kernel_initializer = _initializer(n, "kernel_initializer", kernel_initializer)

    def _add_to(self, net, inputs, seed=0):
        return _add_fused(self, net, "Conv2DTranspose", inputs, dict(
            filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
            dilation=list(self.dilation_rate), padding=self.padding, use_bias=self.use_bias,
            output_padding=list(self.output_padding) if self.output_padding is not None else [-1, -1],
            kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer))

    def get_config(self):
        return dict(super().get_config(), filters=self.filters, kernel_size=list(self.kernel_size),
                    strides=list(self.strides), padding=self.padding,
                    output_padding=None if self.output_padding is None else list(self.output_padding),
                    data_format=self.data_format, dilation_rate=list(self.dilation_rate),
                    activation=self.activation, use_bias=self.use_bias,
                    kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer)


class Conv1D(Layer):
    """1D convolution over (steps, channels); kernel (kernel_size, in_channels, filters). padding
    'valid', 'same' or 'causal' (zeros before the sequence only: output t sees inputs <= t). Runs
    as a Conv2D over (1, steps, channels)."""

    _regularizable = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        n = self.name
        self.filters = _positive_int(n, "filters", filters)
        self.kernel_size = _int1(n, "kernel_size", kernel_size)
        self.strides = _int1(n, "strides", strides)
        self.dilation_rate = _int1(n, "dilation_rate", dilation_rate)
        if self.strides != 1 and self.dilation_rate != 1:
            raise ValueError(f"{n}: strides > 1 together with dilation_rate > 1 is not supported (as Keras)")
        if padding not in ("valid", "same", "causal"):
            raise ValueError(f"{n}: padding must be 'valid', 'same' or 'causal', got {padding!r}")
        self.padding = padding
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{n}: only data_format='channels_last' (steps, channels) is supported")
        self.activation, self._alpha = _activation(n, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializer(n, "kernel_initializer", kernel_initializer)
        self.bias_initializer = _initializer(n, "bias_initializer", bias_initializer)

    def _can_fuse_relu(self):
        return self.activation == "linear"

    def _add_to(self, net, inputs, seed=0):
        pad, pads = self.padding, [0, 0, 0, 0]
        if pad == "causal":
            pad, pads = "explicit", [0, 0, (self.kernel_size - 1) * self.dilation_rate, 0]
        return _add_as_1d(self, net, inputs, lambda ins: _add_fused(self, net, "Conv2D", ins, dict(
            filters=self.filters, kernel_size=[1, self.kernel_size], strides=[1, self.strides],
            dilation=[1, self.dilation_rate], padding=pad, pads=pads, use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer)))

    def _bind(self, net, first, last):
        super()._bind(net, first, last)
        off, shape = self._params["kernel"]
        self._params["kernel"] = (off, tuple(shape[1:]))   # (1, k, in, filters) -> Keras's (k, in, filters)

    def get_config(self):
        return dict(super().get_config(), filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                    padding=self.padding, dilation_rate=self.dilation_rate, activation=self.activation,
                    use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                    bias_initializer=self.bias_initializer)
