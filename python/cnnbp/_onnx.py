"""ONNX export of a built model (inference graph), written with the optional ``onnx`` package.

The graph takes and returns cnnbp's own layout (channels last, NHWC for images) with a dynamic batch
axis; convolutions, pooling and resizing run in ONNX's channels-first layout between a Transpose
in and a Transpose out (runtimes fold adjacent pairs). Layers that act only in training
(dropout, noise, augmentation) become Identity; BatchNormalization becomes its inference affine
map (moving statistics)."""

import numpy as np

from .layers import base as _base

_NHWC_TO_NCHW = [0, 3, 1, 2]
_NCHW_TO_NHWC = [0, 2, 3, 1]


class _Graph:
    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, hint):
        self._n += 1
        return f"{hint}/{self._n}"

    def const(self, hint, value, dtype=np.float32):
        n = self.name(hint)
        self.inits.append(self.nh.from_array(np.ascontiguousarray(np.asarray(value, dtype=dtype)), n))
        return n

    def op(self, op, inputs, hint, out=None, **attrs):
        out = out or self.name(hint)
        self.nodes.append(self.h.make_node(op, list(inputs), [out], name=self.name(hint + "/" + op), **attrs))
        return out


def _act(g, x, hint, kind, alpha, out=None):
    """An activation of cnnbp's kinds (csrc/kernels/activation.h), over the last axis for softmax."""
    if kind == "linear":
        return g.op("Identity", [x], hint, out)
    if kind == "relu":
        return g.op("Relu", [x], hint, out)
    if kind == "leaky_relu":
        return g.op("LeakyRelu", [x], hint, out, alpha=float(alpha))
    if kind in ("relu6", "relu_max"):
        return g.op("Clip", [x, g.const(hint + "/min", 0.0), g.const(hint + "/max", alpha)], hint, out)
    if kind == "sigmoid":
        return g.op("Sigmoid", [x], hint, out)
    if kind == "tanh":
        return g.op("Tanh", [x], hint, out)
    if kind == "softmax":
        return g.op("Softmax", [x], hint, out, axis=-1)
    if kind == "elu":
        return g.op("Elu", [x], hint, out, alpha=float(alpha))
    if kind == "selu":
        return g.op("Selu", [x], hint, out, alpha=1.6732632423543772, gamma=1.0507009873554805)
    if kind == "softplus":
        return g.op("Softplus", [x], hint, out)
    if kind == "hard_sigmoid":  # Keras 3: clip(x / 6 + 1/2, 0, 1)
        return g.op("HardSigmoid", [x], hint, out, alpha=1.0 / 6.0, beta=0.5)
    if kind == "swish":
        return g.op("Mul", [x, g.op("Sigmoid", [x], hint)], hint, out)
    if kind == "gelu":  # x * Phi(x), exact (Gelu is an operator from opset 20 only)
        e = g.op("Erf", [g.op("Mul", [x, g.const(hint + "/rsqrt2", 1.0 / np.sqrt(2.0))], hint)], hint)
        half = g.op("Mul", [x, g.const(hint + "/half", 0.5)], hint)
        return g.op("Mul", [half, g.op("Add", [e, g.const(hint + "/one", 1.0)], hint)], hint, out)
    raise NotImplementedError(f"export_onnx: no ONNX form for activation {kind!r}")


def _layer_act(g, layer, x, out):
    kind, alpha = _base._activation(layer.name, getattr(layer, "activation", None))
    return _act(g, x, layer.name, kind, alpha, out)


def _channels_first(g, x, rank, hint):
    return g.op("Transpose", [x], hint, perm=_NHWC_TO_NCHW if rank == 4 else [0, 2, 1])


def _channels_last(g, x, rank, hint):
    return g.op("Transpose", [x], hint, perm=_NCHW_TO_NHWC if rank == 4 else [0, 2, 1])


def _spatial(g, x, rank, hint, op, inputs=(), **attrs):
    """op over channels-first data between two Transposes: channels last in, channels last out."""
    t = _channels_first(g, x, rank, hint)
    y = g.op(op, [t] + list(inputs), hint, **attrs)
    return _channels_last(g, y, rank, hint)


def _affine_last(g, x, hint, scale, shift, out=None):
    """x * scale + shift along the last axis."""
    y = g.op("Mul", [x, g.const(hint + "/scale", scale)], hint)
    return g.op("Add", [y, g.const(hint + "/shift", shift)], hint, out)


def _conv_pads(layer):
    t, b, l, r = (int(v) for v in layer._pads)
    return [t, l, b, r]


def _same_pads(size, k, s, d):
    """Keras/TensorFlow 'same': total padding split with the extra one after."""
    keff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + keff - size, 0)
    return total // 2, total - total // 2


def _pads_2d(layer, in_shape, kernel, strides, dilation):
    if layer.padding == "explicit":
        return _conv_pads(layer)
    if layer.padding == "valid":
        return [0, 0, 0, 0]
    t, b = _same_pads(in_shape[0], kernel[0], strides[0], dilation[0])
    l, r = _same_pads(in_shape[1], kernel[1], strides[1], dilation[1])
    return [t, l, b, r]


def _check_channels_last(layer):
    fmt = getattr(layer, "data_format", None)
    if fmt not in (None, "channels_last"):
        raise NotImplementedError(f"export_onnx: {layer.name} ({type(layer).__name__}) uses data_format={fmt!r}; "
                                  "only channels_last layers are exported")


def _conv2d(g, layer, x, out):
    in_shape = layer.input_shape[1:]
    k = np.array(layer.kernel)  # (kh, kw, in / groups, filters)
    w = g.const(layer.name + "/kernel", k.transpose(3, 2, 0, 1))
    inputs = [w] + ([g.const(layer.name + "/bias", np.array(layer.bias))] if layer.use_bias else [])
    y = _spatial(g, x, 4, layer.name, "Conv", inputs, kernel_shape=list(layer.kernel_size),
                 strides=list(layer.strides), dilations=list(layer.dilation_rate), group=int(layer.groups),
                 pads=_pads_2d(layer, in_shape, layer.kernel_size, layer.strides, layer.dilation_rate))
    return _layer_act(g, layer, y, out)


def _depthwise(g, layer, x, out, kernel_name="depthwise_kernel", bias=True, act=True):
    in_shape = layer.input_shape[1:]
    k = np.array(layer._view(kernel_name))  # (kh, kw, C, m): output channel c * m + j
    kh, kw, c, m = k.shape
    w = g.const(layer.name + "/depthwise", k.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))
    inputs = [w] + ([g.const(layer.name + "/bias", np.array(layer.bias))] if bias and layer.use_bias else [])
    y = _spatial(g, x, 4, layer.name, "Conv", inputs, kernel_shape=[kh, kw], strides=list(layer.strides),
                 dilations=list(layer.dilation_rate), group=int(c),
                 pads=_pads_2d(layer, in_shape, layer.kernel_size, layer.strides, layer.dilation_rate))
    return _layer_act(g, layer, y, out) if act else y


def _separable(g, layer, x, out):
    y = _depthwise(g, layer, x, None, bias=False, act=False)
    p = np.array(layer._view("pointwise_kernel"))  # (1, 1, C*m, filters)
    inputs = [g.const(layer.name + "/pointwise", p.transpose(3, 2, 0, 1))]
    if layer.use_bias:
        inputs.append(g.const(layer.name + "/bias", np.array(layer.bias)))
    y = _spatial(g, y, 4, layer.name, "Conv", inputs, kernel_shape=[1, 1])
    return _layer_act(g, layer, y, out)


def _conv_transpose(g, layer, x, out):
    k = np.array(layer.kernel)  # (kh, kw, filters, in)
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw = getattr(layer, "dilation_rate", (1, 1))
    # The full transposed convolution has (H-1)*s + k_eff rows; the layer keeps `kept` of them,
    # cropping total = (H-1)*s + k_eff - out with the smaller half first (TensorFlow's 'same'), or,
    # when total < 0, adding -total zero-input rows at the end (ONNX's output_padding).
    pads, ops = [], []
    for H, kept, kk, s, d in ((layer.input_shape[1], layer.output_shape[1], kh, sh, dh),
                              (layer.input_shape[2], layer.output_shape[2], kw, sw, dw)):
        total = int((H - 1) * s + (kk - 1) * d + 1 - kept)
        pads.append((total // 2, total - total // 2) if total >= 0 else (0, 0))
        ops.append(max(-total, 0))
    inputs = [g.const(layer.name + "/kernel", k.transpose(3, 2, 0, 1))]
    if layer.use_bias:
        inputs.append(g.const(layer.name + "/bias", np.array(layer.bias)))
    y = _spatial(g, x, 4, layer.name, "ConvTranspose", inputs, kernel_shape=[int(kh), int(kw)],
                 strides=[int(sh), int(sw)], dilations=[int(dh), int(dw)], pads=[pads[0][0], pads[1][0], pads[0][1], pads[1][1]], output_padding=ops)
    return _layer_act(g, layer, y, out)


def _conv1d(g, layer, x, out):
    k = np.array(layer.kernel)  # (k, in, filters)
    ks = int(np.atleast_1d(layer.kernel_size)[0])
    s = int(np.atleast_1d(layer.strides)[0])
    d = int(np.atleast_1d(layer.dilation_rate)[0])
    if layer.padding == "same":
        pads = list(_same_pads(layer.input_shape[1], ks, s, d))
    elif layer.padding == "causal":
        pads = [(ks - 1) * d, 0]
    else:
        pads = [0, 0]
    inputs = [g.const(layer.name + "/kernel", k.transpose(2, 1, 0))]
    if layer.use_bias:
        inputs.append(g.const(layer.name + "/bias", np.array(layer.bias)))
    y = _spatial(g, x, 3, layer.name, "Conv", inputs, kernel_shape=[ks], strides=[s], dilations=[d], pads=pads)
    return _layer_act(g, layer, y, out)


def _dense(g, layer, x, out):
    y = g.op("MatMul", [x, g.const(layer.name + "/kernel", np.array(layer.kernel))], layer.name)
    if layer.use_bias:
        y = g.op("Add", [y, g.const(layer.name + "/bias", np.array(layer.bias))], layer.name)
    return _layer_act(g, layer, y, out)


def _pool2d(g, layer, x, out, op):
    in_shape = layer.input_shape[1:]
    pads = _pads_2d(layer, in_shape, layer.pool_size, layer.strides, (1, 1))
    attrs = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides), pads=pads)
    if op == "AveragePool":
        attrs["count_include_pad"] = 0
    y = _spatial(g, x, 4, layer.name, op, **attrs)
    return g.op("Identity", [y], layer.name, out)


def _pool1d(g, layer, x, out, op):
    ps = int(np.atleast_1d(layer.pool_size)[0])
    st = int(np.atleast_1d(layer.strides if layer.strides is not None else layer.pool_size)[0])
    pads = list(_same_pads(layer.input_shape[1], ps, st, 1)) if layer.padding == "same" else [0, 0]
    attrs = dict(kernel_shape=[ps], strides=[st], pads=pads)
    if op == "AveragePool":
        attrs["count_include_pad"] = 0
    y = _spatial(g, x, 3, layer.name, op, **attrs)
    return g.op("Identity", [y], layer.name, out)


def _batchnorm(g, layer, x, out):
    c = layer.input_shape[-1] if layer.axis in (-1, len(layer.input_shape) - 1) else None
    if c is None:
        raise NotImplementedError(f"export_onnx: {layer.name} normalises axis {layer.axis}; only the last axis "
                                  "(channels) is exported")
    mean = np.array(layer._view("moving_mean"), np.float64)
    var = np.array(layer._view("moving_variance"), np.float64)
    gamma = np.array(layer._view("gamma"), np.float64) if layer.scale else np.ones(c)
    beta = np.array(layer._view("beta"), np.float64) if layer.center else np.zeros(c)
    scale = gamma / np.sqrt(var + layer.epsilon)
    return _affine_last(g, x, layer.name, scale, beta - mean * scale, out)


def _layernorm(g, layer, x, out):
    c = layer.input_shape[-1]
    gamma = np.array(layer._view("gamma")) if layer.scale else np.ones(c, np.float32)
    beta = np.array(layer._view("beta")) if layer.center else np.zeros(c, np.float32)
    return g.op("LayerNormalization", [x, g.const(layer.name + "/gamma", gamma), g.const(layer.name + "/beta", beta)],
                layer.name, out, axis=-1, epsilon=float(layer.epsilon))


def _normalization(g, layer, x, out):
    mean = np.array(layer._view("mean"), np.float64)
    std = np.maximum(np.sqrt(np.array(layer._view("variance"), np.float64)), 1e-7)
    if layer.invert:
        return _affine_last(g, x, layer.name, std, mean, out)
    return _affine_last(g, x, layer.name, 1.0 / std, -mean / std, out)


def _merge(g, layer, xs, out):
    kind = type(layer).__name__
    if kind == "Concatenate":
        rank = len(layer.output_shape)
        axis = layer.axis if layer.axis >= 0 else rank + layer.axis
        return g.op("Concat", xs, layer.name, out, axis=int(axis))
    if kind == "Subtract":
        y = g.op("Sub", xs, layer.name)
    elif kind == "Multiply":
        y = xs[0]
        for t in xs[1:]:
            y = g.op("Mul", [y, t], layer.name)
    elif kind == "Maximum":
        y = g.op("Max", xs, layer.name)
    else:
        y = g.op("Sum", xs, layer.name)
        if kind == "Average":
            y = g.op("Mul", [y, g.const(layer.name + "/inv", 1.0 / len(xs))], layer.name)
    return g.op("Identity", [y], layer.name, out)


def _int64(g, hint, values):
    return g.const(hint, np.array(values, np.int64), np.int64)


# Layers whose nodes depend on their weights and configuration, by class name (exact: a subclass
# is not the same layer).
_EMITTERS = {"Conv2D": _conv2d, "SeparableConv2D": _separable, "DepthwiseConv2D": _depthwise,
             "Conv2DTranspose": _conv_transpose, "Conv1D": _conv1d, "Dense": _dense,
             "BatchNormalization": _batchnorm, "LayerNormalization": _layernorm, "Normalization": _normalization}


def _slice_hw(g, layer, x, top, left, h, w, out):
    """Rows [top, top+h) and columns [left, left+w) of NHWC x."""
    return g.op("Slice", [x, _int64(g, layer.name + "/starts", [top, left]),
                          _int64(g, layer.name + "/ends", [top + h, left + w]), _int64(g, layer.name + "/axes", [1, 2])],
                layer.name, out)


def _layer(g, layer, xs, out):
    """Emits the nodes of one layer (inputs xs, output name out)."""
    kind = type(layer).__name__
    _check_channels_last(layer)
    x = xs[0]
    emit = _EMITTERS.get(kind)
    if emit is not None:
        return emit(g, layer, x, out)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        return _pool2d(g, layer, x, out, "MaxPool" if kind.startswith("Max") else "AveragePool")
    if kind in ("MaxPooling1D", "AveragePooling1D"):
        return _pool1d(g, layer, x, out, "MaxPool" if kind.startswith("Max") else "AveragePool")
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalMaxPooling1D"):
        axes = [1, 2] if kind.endswith("2D") else [1]
        keep = 1 if getattr(layer, "keepdims", False) else 0
        op = "ReduceMean" if "Average" in kind else "ReduceMax"
        return g.op(op, [x], layer.name, out, axes=axes, keepdims=keep)
    if kind in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Concatenate"):
        return _merge(g, layer, xs, out)
    if kind == "Activation":
        return _layer_act(g, layer, x, out)
    if kind == "ReLU":
        cfg = layer._core_config()
        return _act(g, x, layer.name, cfg["activation"], cfg["alpha"], out)
    if kind == "LeakyReLU":
        return _act(g, x, layer.name, "leaky_relu", layer.negative_slope, out)
    if kind == "ELU":
        return _act(g, x, layer.name, "elu", layer.alpha, out)
    if kind == "Softmax":
        return _act(g, x, layer.name, "softmax", 0.0, out)
    if kind == "PReLU":
        a = np.array(layer._view("alpha"))
        return g.op("PRelu", [x, g.const(layer.name + "/alpha", a)], layer.name, out)
    if kind in ("Dropout", "SpatialDropout2D", "GaussianNoise", "Identity", "RandomFlip", "RandomTranslation",
                "RandomRotation", "RandomZoom", "RandomContrast", "RandomBrightness", "RandomErasing"):
        return g.op("Identity", [x], layer.name, out)  # active in training only
    if kind == "RandomCrop":  # inference: the central crop (as Keras), after the padding when given
        h, w = layer.output_shape[1:3]
        y = x
        pad = int(getattr(layer, "padding", 0) or 0)
        if pad:
            y = g.op("Pad", [y, _int64(g, layer.name + "/pads", [0, pad, pad, 0, 0, pad, pad, 0])], layer.name)
        hi, wi = layer.input_shape[1] + 2 * pad, layer.input_shape[2] + 2 * pad
        return _slice_hw(g, layer, y, (hi - h) // 2, (wi - w) // 2, h, w, out)
    if kind == "Rescaling":
        c = layer.input_shape[-1]
        return _affine_last(g, x, layer.name, np.full(c, layer.scale), np.full(c, layer.offset), out)
    if kind == "Flatten":
        return g.op("Flatten", [x], layer.name, out, axis=1)
    if kind == "Reshape":
        return g.op("Reshape", [x, _int64(g, layer.name + "/shape", [-1] + list(layer.output_shape[1:]))], layer.name,
                    out)
    if kind == "Permute":
        return g.op("Transpose", [x], layer.name, out, perm=[0] + [int(d) for d in layer.dims])
    if kind == "RepeatVector":
        y = g.op("Unsqueeze", [x, _int64(g, layer.name + "/axis", [1])], layer.name)
        return g.op("Expand", [y, _int64(g, layer.name + "/shape", [1, layer.n, 1])], layer.name, out)
    if kind == "ZeroPadding2D":
        t, b, l, r = layer.padding
        return g.op("Pad", [x, _int64(g, layer.name + "/pads", [0, t, l, 0, 0, b, r, 0])], layer.name, out)
    if kind == "Cropping2D":
        t, b, l, r = layer.cropping
        h, w = layer.input_shape[1:3]
        return _slice_hw(g, layer, x, t, l, h - t - b, w - l - r, out)
    if kind == "UpSampling2D":
        sh, sw = layer.size
        scales = g.const(layer.name + "/scales", [1.0, 1.0, float(sh), float(sw)])
        if layer.interpolation == "nearest":
            attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
        return g.op("Identity", [_spatial(g, x, 4, layer.name, "Resize", ["", scales], **attrs)], layer.name, out)
    raise NotImplementedError(f"export_onnx: no ONNX form for {layer.name} ({kind})")


def export(model, path, opset=17):
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportError("export_onnx needs the onnx package: pip install onnx (or cnnbp[onnx])") from None
    if isinstance(opset, bool) or not isinstance(opset, int) or not 17 <= opset <= 21:
        raise ValueError(f"export_onnx: opset must be an int in [17, 21], got {opset!r}")
    model._ensure_built()
    g = _Graph(helper, numpy_helper)
    in_name = model._input_name
    names = {in_name: "input"}
    for layer in model._layers:
        xs = [names[i] for i in model._inbound[layer.name]]
        last = layer is model._layers[-1]
        names[layer.name] = _layer(g, layer, xs, "output" if last else g.name(layer.name + "/out"))
    if not model._layers:
        g.op("Identity", ["input"], "input", "output")
    if opset >= 18:  # ReduceMean/ReduceMax take axes as an input from opset 18
        for i, n in enumerate(g.nodes):
            if n.op_type in ("ReduceMean", "ReduceMax"):
                axes = next(a.ints for a in n.attribute if a.name == "axes")
                keep = next(a.i for a in n.attribute if a.name == "keepdims")
                g.nodes[i] = helper.make_node(n.op_type, [n.input[0], _int64(g, n.name + "/axes", list(axes))],
                                              list(n.output), name=n.name, keepdims=keep)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch"] + list(model.input_shape[1:]))
    outp = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch"] + list(model.output_shape[1:]))
    graph = helper.make_graph(g.nodes, model.name or "cnnbp", [inp], [outp], initializer=g.inits)
    from . import __version__
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="cnnbp",
                          producer_version=__version__)
    m.ir_version = min(m.ir_version, 9)  # readable by runtimes of the last two years
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    return path
