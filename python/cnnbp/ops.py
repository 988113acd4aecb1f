"""Every kernel's forward and backward on numpy arrays.

float64 input runs the portable reference path in double precision (what gradient checks use);
anything else runs in float32 on the dispatched SIMD path, or on the path named by ``isa``
('baseline', 'avx2', 'avx512', 'avx2-wide'; for conv2d and dense also the mixed-precision
kernels 'bf16-emulated' and 'avx512_bf16', see cnnbp.mixed_precision). The conv2d passes take
``algo``: None (the kernels' choice, see CNNBP_CONV_ALGO in docs/performance.md), 'direct',
'winograd2' (F(2x2,3x3)) or 'winograd'/'winograd4' (F(4x4,3x3)); Winograd applies to float32
stride-1 3x3 convolutions without dilation, anything else runs direct. Layouts are Keras's: x (N, H, W, C), conv kernel
(kh, kw, C, K), dense kernel (in, out)."""

import numpy as np

from . import _core
from .layers import _pair, _padding

__all__ = [
    "conv2d", "conv2d_backward_data", "conv2d_backward_weight", "conv2d_backward_bias", "conv2d_algorithms",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "global_avg_pool2d", "global_avg_pool2d_backward", "dense", "dense_backward_data",
    "dense_backward_weight", "dense_backward_bias", "activation", "activation_backward", "softmax",
    "softmax_backward", "dropout", "dropout_backward", "loss", "sgd_update", "adam_update",
    "global_max_pool2d", "global_max_pool2d_backward", "batch_norm", "batch_norm_backward", "merge",
    "merge_backward", "concatenate", "concatenate_backward", "zero_pad2d", "crop2d",
]
_MERGE = {"add": 0, "subtract": 1, "multiply": 2, "average": 3, "maximum": 4}

_o = _core.ops
_PAD = {"valid": 0, "same": 1, "explicit": 2}
_ACT = {name: k for k, name in enumerate(_core.activation_names())}   # csrc/kernels/activation.h


def _dtype(*arrays):
    return np.float64 if any(np.asarray(a).dtype == np.float64 for a in arrays if a is not None) else np.float32


def _arr(a, dt):
    return np.ascontiguousarray(a, dtype=dt)


def _fn(name, dt):
    return getattr(_o, name + ("_f64" if dt == np.float64 else "_f32"))


def _isa(isa):
    return "" if isa is None else isa


def _conv_args(strides, padding, dilation_rate):
    mode, pads = _padding("conv2d", padding)
    return _pair("conv2d", "strides", strides), _pair("conv2d", "dilation_rate", dilation_rate), _PAD[mode], pads


def conv2d(x, w, b=None, strides=1, padding="valid", dilation_rate=1, relu=False, isa=None, algo=None):
    """y[n,p,q,k] = b[k] + sum_{r,s,c} x[n, p*sh - pt + r*dh, q*sw - pl + s*dw, c] * w[r,s,c,k];
    with relu=True, max(y, 0) applied as the kernel stores y (NaN propagates)."""
    dt = _dtype(x, w, b)
    st, dil, mode, pads = _conv_args(strides, padding, dilation_rate)
    return _fn("conv2d_forward", dt)(_arr(x, dt), _arr(w, dt), None if b is None else _arr(b, dt), st, dil, mode,
                                     pads, bool(relu), _isa(isa), _isa(algo))


def conv2d_backward_data(dy, w, input_hw, strides=1, padding="valid", dilation_rate=1, add_to=None, isa=None,
                         algo=None):
    """Gradient of conv2d with respect to x, for an input of spatial size input_hw. add_to: the
    kernel's accumulate mode (as for a tensor with several readers), returning add_to + gradient."""
    dt = _dtype(dy, w)
    st, dil, mode, pads = _conv_args(strides, padding, dilation_rate)
    at = None if add_to is None else _arr(add_to, dt)
    return _fn("conv2d_backward_data", dt)(_arr(dy, dt), _arr(w, dt), tuple(input_hw), st, dil, mode, pads, at,
                                           _isa(isa), _isa(algo))


def conv2d_backward_weight(dy, x, kernel_size, strides=1, padding="valid", dilation_rate=1, isa=None, algo=None):
    """Gradient of conv2d with respect to its kernel."""
    dt = _dtype(dy, x)
    st, dil, mode, pads = _conv_args(strides, padding, dilation_rate)
    dw, _ = _fn("conv2d_backward_weight", dt)(_arr(dy, dt), _arr(x, dt), _pair("conv2d", "kernel_size", kernel_size),
                                              st, dil, mode, pads, False, _isa(isa), _isa(algo))
    return dw


def conv2d_algorithms(x_shape, kernel_shape, strides=1, padding="valid", dilation_rate=1, isa=None, algo=None):
    """The algorithm each float32 conv2d pass runs for this shape: a dict of 'forward',
    'backward_data', 'backward_weight' -> 'direct', 'winograd2' or 'winograd4' (with
    CNNBP_CONV_ALGO=auto this measures the shape once, as a network's plan does)."""
    st, dil, mode, pads = _conv_args(strides, padding, dilation_rate)
    return _o.conv2d_algorithms([int(v) for v in x_shape], [int(v) for v in kernel_shape], st, dil, mode, pads,
                                _isa(isa), _isa(algo))


def conv2d_backward_bias(dy):
    """Gradient of conv2d with respect to its bias: dy summed over N, H, W."""
    dy = np.asarray(dy)
    if dy.ndim != 4:
        raise ValueError(f"conv2d_backward_bias: expected dy of rank 4 (N, P, Q, K), got shape {dy.shape}")
    return dy.sum(axis=(0, 1, 2))


def _pool_args(pool_size, strides, padding):
    pool = _pair("pool2d", "pool_size", pool_size)
    st = pool if strides is None else _pair("pool2d", "strides", strides)
    mode, _ = _padding("pool2d", padding, allow_explicit=False)
    return pool, st, _PAD[mode]


def max_pool2d(x, pool_size=2, strides=None, padding="valid", return_argmax=False, isa=None):
    """Max over each window; with return_argmax also the flat input position (h*W + w) chosen."""
    dt = _dtype(x)
    pool, st, mode = _pool_args(pool_size, strides, padding)
    y, am = _fn("max_pool2d_forward", dt)(_arr(x, dt), pool, st, mode, _isa(isa))
    return (y, am) if return_argmax else y


def max_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid", relu=False, isa=None):
    """Gradient of max pooling with respect to x (routed to each window's arg-max).

    relu=True: x is a ReLU's output and the result is the gradient before that ReLU as well
    (the fused form a network uses after a convolution with activation='relu')."""
    dt = _dtype(dy, x)
    pool, st, mode = _pool_args(pool_size, strides, padding)
    x = _arr(x, dt)
    y, am = _fn("max_pool2d_forward", dt)(x, pool, st, mode, _isa(isa))
    return _fn("max_pool2d_backward", dt)(_arr(dy, dt), am, x, pool, st, mode, y if relu else None, _isa(isa))


def avg_pool2d(x, pool_size=2, strides=None, padding="valid", isa=None):
    """Average pooling (padding excluded from each window's count)."""
    dt = _dtype(x)
    pool, st, mode = _pool_args(pool_size, strides, padding)
    return _fn("avg_pool2d_forward", dt)(_arr(x, dt), pool, st, mode, _isa(isa))


def avg_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid", isa=None):
    """Gradient of average pooling with respect to x."""
    dt = _dtype(dy, x)
    pool, st, mode = _pool_args(pool_size, strides, padding)
    return _fn("avg_pool2d_backward", dt)(_arr(dy, dt), _arr(x, dt), pool, st, mode, _isa(isa))


def global_avg_pool2d(x, isa=None):
    """Mean over height and width: (N, H, W, C) -> (N, C)."""
    dt = _dtype(x)
    return _fn("global_avg_pool2d_forward", dt)(_arr(x, dt), _isa(isa))


def global_avg_pool2d_backward(dy, input_hw, isa=None):
    """Gradient of global average pooling for an input of spatial size input_hw."""
    dt = _dtype(dy)
    return _fn("global_avg_pool2d_backward", dt)(_arr(dy, dt), tuple(input_hw), _isa(isa))


def dense(x, w, b=None, isa=None):
    """y = x @ w + b."""
    dt = _dtype(x, w, b)
    return _fn("dense_forward", dt)(_arr(x, dt), _arr(w, dt), None if b is None else _arr(b, dt), _isa(isa))


def dense_backward_data(dy, w, add_to=None, isa=None):
    """dx = dy @ w.T; add_to: the accumulate mode, returning add_to + dy @ w.T."""
    dt = _dtype(dy, w)
    at = None if add_to is None else _arr(add_to, dt)
    return _fn("dense_backward_data", dt)(_arr(dy, dt), _arr(w, dt), at, _isa(isa))


def dense_backward_weight(dy, x, isa=None):
    """dw = x.T @ dy."""
    dt = _dtype(dy, x)
    dw, _ = _fn("dense_backward_weight", dt)(_arr(dy, dt), _arr(x, dt), False, _isa(isa))
    return dw


def dense_backward_bias(dy, isa=None):
    """db = dy summed over the batch."""
    dt = _dtype(dy)
    dy = _arr(dy, dt)
    if dy.ndim != 2:
        raise ValueError(f"dense_backward_bias: expected dy of rank 2 (N, units), got shape {dy.shape}")
    x = np.zeros((dy.shape[0], 1), dtype=dt)
    _, db = _fn("dense_backward_weight", dt)(dy, x, True, _isa(isa))
    return db


def _act_kind(kind):
    if kind is None:
        kind = "linear"
    if kind not in _ACT:
        raise ValueError(f"activation: unknown kind {kind!r}; expected one of {sorted(_ACT)}")
    return _ACT[kind]


def activation(x, kind, alpha=0.2, isa=None):
    """An elementwise activation of csrc/kernels/activation.h (alpha: leaky_relu's slope, elu's alpha,
    relu_max's maximum), or softmax over the last axis."""
    dt = _dtype(x)
    return _fn("activation_forward", dt)(_arr(x, dt), _act_kind(kind), float(alpha), _isa(isa))


def activation_backward(dy, x, y, kind, alpha=0.2, isa=None):
    """Gradient of an activation given its input x and output y."""
    dt = _dtype(dy, x, y)
    return _fn("activation_backward", dt)(_arr(dy, dt), _arr(x, dt), _arr(y, dt), _act_kind(kind), float(alpha),
                                          _isa(isa))


def softmax(x, isa=None):
    """Softmax over the last axis."""
    return activation(x, "softmax", isa=isa)


def softmax_backward(dy, y, isa=None):
    """Gradient of softmax given its output y."""
    return activation_backward(dy, y, y, "softmax", isa=isa)


def dropout(x, rate, seed=0, stream=0, isa=None):
    """Inverted dropout: returns (y, mask) with mask 0 or 1/(1-rate)."""
    dt = _dtype(x)
    return _fn("dropout_forward", dt)(_arr(x, dt), float(rate), int(seed), int(stream), _isa(isa))


def dropout_backward(dy, mask, isa=None):
    """dy * mask."""
    dt = _dtype(dy, mask)
    return _fn("dropout_backward", dt)(_arr(dy, dt), _arr(mask, dt), _isa(isa))


_LOSSES = tuple(_core.loss_names())


def loss(pred, target, kind, epsilon=1e-7, isa=None, delta=1.0):
    """(mean loss, d loss / d pred, correct count) for pred (N, K) and target (N, K), or (N,) labels
    for the sparse kinds; the kinds and their formulas are listed in csrc/kernels/loss.h (delta:
    Huber's threshold)."""
    if kind not in _LOSSES:
        raise ValueError(f"loss: unknown kind {kind!r}; expected one of {_LOSSES}")
    dt = _dtype(pred, target)
    return _fn("loss", dt)(_arr(pred, dt), _arr(target, dt), _LOSSES.index(kind), float(epsilon),
                             float(delta), _isa(isa))


def metric_sums(pred, target, kind, k=5, threshold=0.5, class_id=-1, bins=200, sparse=False, logits=0, isa=None):
    """A metric's sums over one batch (kinds in csrc/kernels/metric.h; cnnbp.metrics uses them):
    pred (N, K); target (N, K), or (N,) labels when sparse; logits: 0 probabilities, 1 softmax
    logits, 2 sigmoid logits."""
    dt = _dtype(pred, target)
    return _fn("metric_sums", dt)(_arr(pred, dt), _arr(target, dt), int(kind), int(k), float(threshold),
                                  int(class_id), int(bins), bool(sparse), int(logits), _isa(isa))


def sgd_update(params, grads, buf, learning_rate, momentum=0.0, weight_decay=0.0, nesterov=False, isa=None):
    """One SGD step in place on params (and the momentum buffer buf)."""
    dt = params.dtype
    _fn("sgd_update", dt)(params, _arr(grads, dt), buf, float(learning_rate), float(momentum), float(weight_decay),
                          bool(nesterov), _isa(isa))


def adam_update(params, grads, m, v, t, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                weight_decay=0.0, isa=None):
    """One Adam(W) step (t: 1-based) in place on params, m and v."""
    dt = params.dtype
    _fn("adam_update", dt)(params, _arr(grads, dt), m, v, float(learning_rate), float(beta_1), float(beta_2),
                           float(epsilon), float(weight_decay), int(t), _isa(isa))


def global_max_pool2d(x, return_argmax=False, isa=None):
    """Maximum over H and W: (N, H, W, C) -> (N, C); argmax holds the position h*W+w."""
    dt = _dtype(x)
    y, am = _fn("global_max_pool2d_forward", dt)(_arr(x, dt), _isa(isa))
    return (y, am) if return_argmax else y


def global_max_pool2d_backward(dy, x, isa=None):
    """Gradient of global max pooling: dy routed to each channel's arg-max."""
    dt = _dtype(dy, x)
    x = _arr(x, dt)
    _, am = _fn("global_max_pool2d_forward", dt)(x, _isa(isa))
    return _fn("global_max_pool2d_backward", dt)(_arr(dy, dt), am, (x.shape[1], x.shape[2]), _isa(isa))


def batch_norm(x, gamma=None, beta=None, epsilon=1e-3, relu=False, isa=None):
    """Training-mode batch normalisation over the last axis: (y, batch mean, biased batch variance).
    relu=True: y is ReLU'd in the same pass (the fused BatchNormalization + ReLU)."""
    dt = _dtype(x, gamma, beta)
    g = None if gamma is None else _arr(gamma, dt)
    b = None if beta is None else _arr(beta, dt)
    return _fn("batch_norm_forward", dt)(_arr(x, dt), g, b, float(epsilon), bool(relu), _isa(isa))


def batch_norm_backward(dy, x, mean, var, gamma=None, epsilon=1e-3, batch_stats=True, y=None, beta=None,
                        relu=False, isa=None):
    """(dx, dgamma, dbeta). batch_stats=True: mean and var are the batch's (the gradient includes
    their dependence on x); False: they are constants (the moving statistics of inference).
    y: the output of batch_norm(..., relu=True), whose ReLU the gradient then goes through too.
    relu=True without y: the same ReLU, its sign recomputed from x with gamma and beta (what a
    network does when it has not kept y)."""
    dt = _dtype(dy, x)
    g = None if gamma is None else _arr(gamma, dt)
    b = None if beta is None else _arr(beta, dt)
    yr = None if y is None else _arr(y, dt)
    return _fn("batch_norm_backward", dt)(_arr(dy, dt), _arr(x, dt), _arr(mean, dt), _arr(var, dt), g,
                                          float(epsilon), bool(batch_stats), yr, b, bool(relu), _isa(isa))


def _merge_args(xs, op):
    if op not in _MERGE:
        raise ValueError(f"merge: op must be one of {', '.join(_MERGE)}, got {op!r}")
    if not isinstance(xs, (list, tuple)) or len(xs) < 2:
        raise ValueError(f"merge: expected a list of at least 2 arrays, got {type(xs).__name__}")
    return list(xs)


def _arrays(name, xs):
    if not isinstance(xs, (list, tuple)) or not xs:
        raise ValueError(f"{name}: expected a non-empty list of arrays, got {type(xs).__name__}")
    return list(xs)


def merge(xs, op, relu=False, isa=None):
    """Elementwise 'add', 'subtract', 'multiply', 'average' or 'maximum' of same-shaped arrays;
    relu=True: followed by max(., 0) in the same pass (not for 'maximum')."""
    xs = _merge_args(xs, op)
    dt = _dtype(*xs)
    return _fn("merge_forward", dt)([_arr(x, dt) for x in xs], _MERGE[op], bool(relu), _isa(isa))


def merge_backward(dy, xs, op, which, relu=False, isa=None):
    """Gradient of merge(xs, op, relu) with respect to xs[which]."""
    xs = _merge_args(xs, op)
    dt = _dtype(dy, *xs)
    xs = [_arr(x, dt) for x in xs]
    y = _fn("merge_forward", dt)(xs, _MERGE[op], bool(relu), _isa(isa))
    return _fn("merge_backward", dt)(_arr(dy, dt), xs, y, _MERGE[op], int(which), bool(relu), _isa(isa))


def concatenate(xs, isa=None):
    """Concatenation along the last axis."""
    xs = _arrays("concatenate", xs)
    dt = _dtype(*xs)
    return _fn("concat_forward", dt)([_arr(x, dt) for x in xs], _isa(isa))


def concatenate_backward(dy, offset, channels, isa=None):
    """The slice [offset, offset + channels) of dy's last axis."""
    dt = _dtype(dy)
    return _fn("concat_backward", dt)(_arr(dy, dt), int(offset), int(channels), _isa(isa))


def _four(name, v):
    try:
        t, b, l, r = (int(a) for a in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (top, bottom, left, right) ints, got {v!r}") from None
    if min(t, b, l, r) < 0:
        raise ValueError(f"{name}: sizes must be non-negative, got {v!r}")
    return t, b, l, r


def zero_pad2d(x, padding, isa=None):
    """Zeros around each image; padding (top, bottom, left, right). Its gradient is crop2d."""
    dt = _dtype(x)
    t, b, l, r = _four("zero_pad2d", padding)
    x = _arr(x, dt)
    return _fn("window_copy", dt)(x, int(t), int(l), (x.shape[1] + t + b, x.shape[2] + l + r), True, _isa(isa))


def crop2d(x, cropping, isa=None):
    """Removes (top, bottom, left, right) rows/columns. Its gradient is zero_pad2d."""
    dt = _dtype(x)
    t, b, l, r = _four("crop2d", cropping)
    x = _arr(x, dt)
    return _fn("window_copy", dt)(x, int(t), int(l), (x.shape[1] - t - b, x.shape[2] - l - r), False, _isa(isa))
