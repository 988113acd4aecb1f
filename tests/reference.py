"""Independent numpy reference implementations of every cnnbp op, forward and backward, plus the
gradient-check helpers. Written from the textbook definitions (whole-array numpy, not loops that
mirror the C++), so an error in the kernels cannot repeat here."""

import numpy as np


# ---- padding helpers ------------------------------------------------------------------------
def same_pad(size, k, stride, dilation=1):
    out = -(-size // stride)
    eff = (k - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def resolve_pads(padding, H, W, kh, kw, sh, sw, dh=1, dw=1):
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        return same_pad(H, kh, sh, dh) + same_pad(W, kw, sw, dw)
    if isinstance(padding, int):
        return (padding,) * 4
    (t, b), (l, r) = padding
    return t, b, l, r


def out_size(n, k, s, d, before, after):
    return (n + before + after - ((k - 1) * d + 1)) // s + 1


# ---- conv2d ---------------------------------------------------------------------------------
def _conv_geometry(x_shape, w_shape, strides, padding, dilation):
    N, H, W, C = x_shape
    R, S, _, K = w_shape
    sh, sw = strides
    dh, dw = dilation
    pt, pb, pl, pr = resolve_pads(padding, H, W, R, S, sh, sw, dh, dw)
    P = out_size(H, R, sh, dh, pt, pb)
    Q = out_size(W, S, sw, dw, pl, pr)
    return (N, H, W, C, R, S, K, sh, sw, dh, dw, pt, pb, pl, pr, P, Q)


def _tap(g, r, s):
    """Tap (r, s): the output positions it reaches (p, q index arrays) and the input rows and
    columns they read. Gathered, never padded: a padding of millions costs nothing."""
    N, H, W, C, R, S, K, sh, sw, dh, dw, pt, pb, pl, pr, P, Q = g
    rows = np.arange(P) * sh - pt + r * dh
    cols = np.arange(Q) * sw - pl + s * dw
    p = np.nonzero((rows >= 0) & (rows < H))[0]
    q = np.nonzero((cols >= 0) & (cols < W))[0]
    return p[:, None], q[None, :], rows[p][:, None], cols[q][None, :]


def conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1)):
    g = _conv_geometry(x.shape, w.shape, strides, padding, dilation)
    N, H, W, C, R, S, K, sh, sw, dh, dw, pt, pb, pl, pr, P, Q = g
    y = np.zeros((N, P, Q, K), dtype=np.float64)
    for r in range(R):
        for s in range(S):
            p, q, h, v = _tap(g, r, s)
            y[:, p, q] += np.einsum("npqc,ck->npqk", x[:, h, v].astype(np.float64), w[r, s])
    if b is not None:
        y += b
    return y


def conv2d_backward(dy, x, w, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """(dx, dw, db) of sum(conv2d(x, w, b) * dy)."""
    g = _conv_geometry(x.shape, w.shape, strides, padding, dilation)
    N, H, W, C, R, S, K, sh, sw, dh, dw_, pt, pb, pl, pr, P, Q = g
    x = x.astype(np.float64)
    dx = np.zeros(x.shape, dtype=np.float64)
    dw = np.zeros(w.shape, dtype=np.float64)
    for r in range(R):
        for s in range(S):
            p, q, h, v = _tap(g, r, s)
            dw[r, s] = np.einsum("npqc,npqk->ck", x[:, h, v], dy[:, p, q])
            dx[:, h, v] += np.einsum("npqk,ck->npqc", dy[:, p, q], w[r, s])  # distinct (h, v) per tap
    return dx, dw, dy.sum(axis=(0, 1, 2))


# ---- pooling --------------------------------------------------------------------------------
def _windows(x, pool, strides, padding, fill):
    N, H, W, C = x.shape
    R, S = pool
    sh, sw = strides
    pt, pb, pl, pr = resolve_pads(padding, H, W, R, S, sh, sw)
    P, Q = out_size(H, R, sh, 1, pt, pb), out_size(W, S, sw, 1, pl, pr)
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    valid = np.pad(np.ones((H, W)), ((pt, pb), (pl, pr)))
    taps, vtaps, pos = [], [], []
    for r in range(R):
        for s in range(S):
            taps.append(xp[:, r: r + (P - 1) * sh + 1: sh, s: s + (Q - 1) * sw + 1: sw, :])
            vtaps.append(valid[r: r + (P - 1) * sh + 1: sh, s: s + (Q - 1) * sw + 1: sw])
            pos.append((r, s))
    return np.stack(taps), np.stack(vtaps), pos, (pt, pl, P, Q)


def max_pool2d(x, pool=(2, 2), strides=None, padding="valid"):
    """(y, argmax) with argmax the flat input position; NaN propagates (first NaN wins)."""
    strides = strides or pool
    taps, vt, pos, (pt, pl, P, Q) = _windows(x, pool, strides, padding, -np.inf)
    isnan = np.isnan(taps)
    any_nan = isnan.any(axis=0)
    k = np.where(any_nan, np.argmax(isnan, axis=0), np.argmax(np.where(isnan, -np.inf, taps), axis=0))
    y = np.take_along_axis(taps, k[None], axis=0)[0]
    r = np.array([p[0] for p in pos])[k]
    s = np.array([p[1] for p in pos])[k]
    ih = np.arange(P)[None, :, None, None] * strides[0] - pt + r
    iw = np.arange(Q)[None, None, :, None] * strides[1] - pl + s
    return y, ih * x.shape[2] + iw


def max_pool2d_backward(dy, x, pool=(2, 2), strides=None, padding="valid"):
    _, am = max_pool2d(x, pool, strides, padding)
    N, H, W, C = x.shape
    dx = np.zeros((N, H * W, C))
    n = np.arange(N)[:, None, None, None]
    c = np.arange(C)[None, None, None, :]
    np.add.at(dx, (np.broadcast_to(n, am.shape), am, np.broadcast_to(c, am.shape)), dy)
    return dx.reshape(N, H, W, C)


def avg_pool2d(x, pool=(2, 2), strides=None, padding="valid"):
    strides = strides or pool
    taps, vt, _, _ = _windows(x, pool, strides, padding, 0.0)
    return taps.sum(axis=0) / vt.sum(axis=0)[None, :, :, None]


def avg_pool2d_backward(dy, x, pool=(2, 2), strides=None, padding="valid"):
    strides = strides or pool
    N, H, W, C = x.shape
    R, S = pool
    pt, pb, pl, pr = resolve_pads(padding, H, W, R, S, strides[0], strides[1])
    _, vt, _, (_, _, P, Q) = _windows(x, pool, strides, padding, 0.0)
    cnt = vt.sum(axis=0)
    dxp = np.zeros((N, H + pt + pb, W + pl + pr, C))
    g = dy / cnt[None, :, :, None]
    for r in range(R):
        for s in range(S):
            dxp[:, r: r + (P - 1) * strides[0] + 1: strides[0], s: s + (Q - 1) * strides[1] + 1: strides[1], :] += g
    return dxp[:, pt: pt + H, pl: pl + W, :]


def global_avg_pool2d(x):
    return x.astype(np.float64).mean(axis=(1, 2))


# ---- dense and activations ------------------------------------------------------------------
def dense(x, w, b=None):
    y = x.astype(np.float64) @ w.astype(np.float64)
    return y if b is None else y + b


def dense_backward(dy, x, w):
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)


def activation(x, kind, alpha=0.2):
    x = x.astype(np.float64)
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "leaky_relu":
        return np.where(x > 0, x, alpha * x)
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if kind == "tanh":
        return np.tanh(x)
    if kind == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if kind in ("elu", "selu"):
        a, s = (1.6732632423543772, 1.0507009873554805) if kind == "selu" else (alpha, 1.0)
        return s * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
    if kind == "gelu":
        return 0.5 * x * (1 + _erf(x / np.sqrt(2)))
    if kind == "swish":
        return x / (1 + np.exp(-x))
    if kind == "softplus":
        return np.logaddexp(0, x)
    if kind == "hard_sigmoid":
        return np.clip(x / 6 + 0.5, 0, 1)
    if kind in ("relu_max", "relu6"):
        return np.clip(x, 0, alpha)
    return x


def _erf(x):
    import math
    return np.vectorize(math.erf)(x)


def activation_backward(dy, x, kind, alpha=0.2):
    y = activation(x, kind, alpha)
    if kind == "relu":
        return dy * (x > 0)
    if kind == "leaky_relu":
        return dy * np.where(x > 0, 1.0, alpha)
    if kind == "sigmoid":
        return dy * y * (1 - y)
    if kind == "tanh":
        return dy * (1 - y * y)
    if kind == "softmax":
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    if kind in ("elu", "selu"):
        a, s = (1.6732632423543772, 1.0507009873554805) if kind == "selu" else (alpha, 1.0)
        return dy * s * np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0)))
    if kind == "gelu":
        return dy * (0.5 * (1 + _erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi))
    if kind in ("swish", "softplus"):
        s = 1 / (1 + np.exp(-x))
        return dy * (s + x * s * (1 - s) if kind == "swish" else s)
    if kind == "hard_sigmoid":
        return dy * ((x > -3) & (x < 3)) / 6
    if kind in ("relu_max", "relu6"):
        return dy * ((x > 0) & (x < alpha))
    return dy


# ---- losses ---------------------------------------------------------------------------------
EPS = 1e-7


def loss(pred, target, kind):
    """Mean loss from the classic formulas (no gradient)."""
    p = pred.astype(np.float64)
    t = target.astype(np.float64)
    N = p.shape[0]
    if kind == "mean_squared_error":
        return np.mean((p - t) ** 2)
    if kind == "binary_crossentropy":
        pc = np.clip(p, EPS, 1 - EPS)
        return -np.mean(t * np.log(pc) + (1 - t) * np.log(1 - pc))
    if kind == "binary_crossentropy_from_logits":
        s = 1 / (1 + np.exp(-p))
        return -np.mean(t * np.log(s) + (1 - t) * np.log(1 - s))
    if kind.startswith("sparse"):
        t = np.eye(p.shape[1])[target.astype(int)]
    if kind in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        return -np.sum(t * np.log(np.clip(p, EPS, 1 - EPS))) / N
    if kind in ("categorical_crossentropy_from_logits", "sparse_categorical_crossentropy_from_logits"):
        logsm = p - p.max(axis=1, keepdims=True)
        logsm = logsm - np.log(np.exp(logsm).sum(axis=1, keepdims=True))
        return -np.sum(t * logsm) / N
    e = p - t
    if kind == "mean_absolute_error":
        return np.mean(np.abs(e))
    if kind == "huber":                                   # delta = 1
        return np.mean(np.where(np.abs(e) <= 1, 0.5 * e ** 2, np.abs(e) - 0.5))
    if kind == "log_cosh":
        return np.mean(np.log(np.cosh(e)))
    if kind == "kl_divergence":
        tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        return np.sum(tc * np.log(tc / pc)) / N
    if kind in ("hinge", "squared_hinge"):
        if np.all((t == 0) | (t == 1)):
            t = 2 * t - 1
        h = np.maximum(1 - t * p, 0)
        return np.mean(h if kind == "hinge" else h ** 2)
    if kind == "categorical_hinge":
        pos = np.sum(t * p, axis=1)
        neg = np.max((1 - t) * p, axis=1)
        return np.mean(np.maximum(neg - pos + 1, 0))
    if kind == "poisson":
        return np.mean(p - t * np.log(p + EPS))
    if kind == "cosine_similarity":
        def unit(a):
            return a / np.sqrt(np.maximum(np.sum(a * a, axis=1, keepdims=True), 1e-12))
        return -np.mean(np.sum(unit(t) * unit(p), axis=1))
    raise ValueError(kind)


# ---- optimizers (published formulas) ---------------------------------------------------------
def sgd_step(p, g, buf, lr, momentum=0.0, coupled_weight_decay=0.0, nesterov=False, weight_decay=0.0):
    """PyTorch's SGD (equal to Keras's for a constant learning rate); weight_decay: Keras 3's
    decoupled decay, p -= lr * weight_decay * p first; coupled_weight_decay: PyTorch's (L2 in g)."""
    p = p - lr * weight_decay * p
    g = g + coupled_weight_decay * p
    if momentum == 0:
        return p - lr * g, buf
    buf = momentum * buf + g
    step = g + momentum * buf if nesterov else buf
    return p - lr * step, buf


def adam_step(p, g, m, v, t, lr=0.001, b1=0.9, b2=0.999, eps=1e-7, weight_decay=0.0):
    """Keras's Adam (Kingma & Ba, with epsilon outside the bias-corrected sqrt); AdamW decay first."""
    p = p - lr * weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return p - alpha * m / (np.sqrt(v) + eps), m, v


def adaptive_step(name, p, g, s, t, lr, weight_decay=0.0, **h):
    """Keras's RMSprop, Adagrad, Adadelta, Adamax, Nadam and Lion, written from their papers' update
    rules as Keras states them; s is a dict of slot arrays (created on the first call), t the
    1-based step. Decoupled weight decay first, as Keras does for every optimizer."""
    p = p - lr * weight_decay * p
    z = np.zeros_like(p)
    if name == "rmsprop":
        rho, mom, eps = h.get("rho", 0.9), h.get("momentum", 0.0), h.get("epsilon", 1e-7)
        s["v"] = rho * s.get("v", z) + (1 - rho) * g ** 2
        if h.get("centered", False):
            s["a"] = rho * s.get("a", z) + (1 - rho) * g
            inc = lr * g / np.sqrt(s["v"] - s["a"] ** 2 + eps)
        else:
            inc = lr * g / np.sqrt(s["v"] + eps)
        if mom > 0:
            s["b"] = mom * s.get("b", z) + inc
            return p - s["b"]
        return p - inc
    if name == "adagrad":
        s["acc"] = s.get("acc", z + h.get("initial_accumulator_value", 0.1)) + g ** 2
        return p - lr * g / np.sqrt(s["acc"] + h.get("epsilon", 1e-7))
    if name == "adadelta":
        rho, eps = h.get("rho", 0.95), h.get("epsilon", 1e-7)
        s["eg2"] = rho * s.get("eg2", z) + (1 - rho) * g ** 2
        dx = -np.sqrt(s.get("edx2", z) + eps) / np.sqrt(s["eg2"] + eps) * g
        s["edx2"] = rho * s.get("edx2", z) + (1 - rho) * dx ** 2
        return p + lr * dx
    b1, b2, eps = h.get("beta_1", 0.9), h.get("beta_2", 0.999), h.get("epsilon", 1e-7)
    if name == "adamax":
        s["m"] = b1 * s.get("m", z) + (1 - b1) * g
        s["u"] = np.maximum(b2 * s.get("u", z), np.abs(g))
        return p - lr / (1 - b1 ** t) * s["m"] / (s["u"] + eps)
    if name == "nadam":
        mu = [b1 * (1 - 0.5 * 0.96 ** k) for k in range(1, t + 2)]       # mu_1 .. mu_{t+1}
        prod_t = np.prod(mu[:t])
        s["m"] = b1 * s.get("m", z) + (1 - b1) * g
        s["v"] = b2 * s.get("v", z) + (1 - b2) * g ** 2
        m_hat = mu[t] * s["m"] / (1 - prod_t * mu[t]) + (1 - mu[t - 1]) * g / (1 - prod_t)
        v_hat = s["v"] / (1 - b2 ** t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)
    if name == "lion":
        b2 = h.get("beta_2", 0.99)
        m = s.get("m", z)
        p = p - lr * np.sign(b1 * m + (1 - b1) * g)
        s["m"] = b2 * m + (1 - b2) * g
        return p
    raise ValueError(name)


# ---- normalisation, merges, reshaping ------------------------------------------------------------
def batch_norm(x, gamma=None, beta=None, eps=1e-3):
    """Training mode over the last axis: (y, mean, biased variance)."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    var = ((x - mean) ** 2).mean(axis=axes)
    y = (x - mean) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y, mean, var


def batch_norm_backward(dy, x, gamma=None, eps=1e-3):
    """(dx, dgamma, dbeta) of training-mode batch normalisation, from the chain rule through the
    mean and variance written out term by term."""
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    mean = x.mean(axis=axes)
    var = ((x - mean) ** 2).mean(axis=axes)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv
    g = np.ones(x.shape[-1]) if gamma is None else gamma
    dxhat = dy * g
    dvar = (dxhat * (x - mean)).sum(axis=axes) * -0.5 * inv ** 3
    dmean = -(dxhat * inv).sum(axis=axes) + dvar * (-2.0 * (x - mean)).mean(axis=axes)
    dx = dxhat * inv + dvar * 2.0 * (x - mean) / m + dmean / m
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def merge(xs, op):
    if op == "add":
        return np.sum(xs, axis=0)
    if op == "subtract":
        return xs[0] - xs[1]
    if op == "multiply":
        return np.prod(xs, axis=0)
    if op == "average":
        return np.mean(xs, axis=0)
    return np.max(xs, axis=0)


def merge_backward(dy, xs, op, which):
    xs = np.asarray(xs)
    if op == "add":
        return dy.copy()
    if op == "subtract":
        return dy if which == 0 else -dy
    if op == "average":
        return dy / len(xs)
    if op == "multiply":
        return dy * np.prod(np.delete(xs, which, axis=0), axis=0)
    first = np.argmax(xs == xs.max(axis=0), axis=0)  # the first input holding the maximum
    return np.where(first == which, dy, 0.0)


def global_max_pool2d(x):
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    return flat.max(axis=1), flat.argmax(axis=1)


def global_max_pool2d_backward(dy, x):
    n, h, w, c = x.shape
    am = x.reshape(n, h * w, c).argmax(axis=1)
    dx = np.zeros((n, h * w, c))
    dx[np.arange(n)[:, None], am, np.arange(c)[None, :]] = dy
    return dx.reshape(x.shape)


def zero_pad2d(x, pads):
    t, b, l, r = pads
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))


def crop2d(x, crops):
    t, b, l, r = crops
    return x[:, t:x.shape[1] - b, l:x.shape[2] - r, :]


# ---- gradient checking ----------------------------------------------------------------------
def numerical_grad(f, x, h=1e-5):
    """Fourth-order central differences of scalar f at x (a float64 array, perturbed in place
    and restored): truncation error O(h^4), so curvature (log near 0) does not pollute it."""
    g = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    gf = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for d in (2 * h, h, -h, -2 * h):
            flat[i] = old + d
            vals.append(f())
        flat[i] = old
        gf[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return g


def bf16_round(a):
    """float32 values rounded to bfloat16 (nearest, ties to even), as float32: subnormals become
    signed zeros, NaN stays NaN, overflow goes to infinity (the rule of VCVTNEPS2BF16)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = np.where(nan, (u | 0x00400000) & 0xFFFF0000, r)
    r = np.where((u & 0x7F800000) == 0, u & 0x80000000, r)
    return r.astype(np.uint32).view(np.float32).reshape(np.shape(a))


def rel_error(a, b):
    """|a - b| / (|a| + |b|) over whole arrays (0 when both are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if den == 0 else float(np.linalg.norm(a - b) / den)


def assert_close(actual, expected, rtol, what=""):
    """Relative error of the whole array below rtol, and no element off by more than 10*rtol of
    the array's scale."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = rel_error(actual, expected)
    assert err < rtol, f"{what}: relative error {err:.3e} >= {rtol:.1e}"
    scale = max(np.abs(expected).max(initial=0.0), 1e-30)
    worst = np.abs(actual - expected).max(initial=0.0) / scale
    assert worst < 10 * rtol, f"{what}: worst element off by {worst:.3e} of the scale"


# ---- metrics (Keras's definitions, from the predictions as probabilities) -----------------------
def metric(kind, p, t, k=5, threshold=0.5, class_id=None, num_thresholds=200):
    """The value Keras reports for a metric over one set of predictions p (N, K) and one-hot or
    soft targets t (N, K)."""
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
    if kind == "accuracy":
        if p.shape[1] == 1:
            return np.mean((p[:, 0] > threshold) == (t[:, 0] > 0.5))
        return np.mean(p.argmax(1) == t.argmax(1))
    if kind == "binary_accuracy":
        return np.mean((p > threshold) == (t > 0.5))
    if kind == "top_k":
        true = t.argmax(1)
        return np.mean([np.sum(p[n] > p[n, true[n]]) < k for n in range(len(p))])
    if kind == "mae":
        return np.mean(np.abs(p - t))
    if kind == "mse":
        return np.mean((p - t) ** 2)
    if kind in ("precision", "recall"):
        cols = slice(None) if class_id is None else slice(class_id, class_id + 1)
        pp, tt = p[:, cols] > threshold, t[:, cols] > 0.5
        tp, fp, fn = np.sum(pp & tt), np.sum(pp & ~tt), np.sum(~pp & tt)
        den = tp + fp if kind == "precision" else tp + fn
        return tp / den if den else 0.0
    if kind == "auc":
        eps = 1e-7
        th = [0 - eps] + [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)] + [1 + eps]
        pos = t.ravel() > 0.5
        pr = p.ravel()
        tpr = np.array([np.sum((pr > c) & pos) for c in th]) / max(pos.sum(), 1)
        fpr = np.array([np.sum((pr > c) & ~pos) for c in th]) / max((~pos).sum(), 1)
        return np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2)
    raise ValueError(kind)


def f1(p, t, average=None, threshold=None):
    """Keras's F1Score: per class 2TP / (2TP + FP + FN), predictions the argmax or above threshold."""
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64) > 0.5
    pred = np.eye(p.shape[1], dtype=bool)[p.argmax(1)] if threshold is None else p > threshold
    tp, fp, fn = (np.sum(pred & t, 0), np.sum(pred & ~t, 0), np.sum(~pred & t, 0))
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    den = 2 * tp + fp + fn
    score = np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
    if average == "macro":
        return score.mean()
    if average == "weighted":
        support = np.sum(t, 0)
        return np.sum(score * support) / support.sum()
    return score


# ---- transposed convolution and upsampling ---------------------------------------------------------
def deconv_length(n, k, s, d, padding, output_padding=None):
    """Keras's output length of a transposed convolution."""
    keff = (k - 1) * d + 1
    if output_padding is None:
        return n * s if padding == "same" else n * s + max(keff - s, 0)
    pad = keff // 2 if padding == "same" else 0
    return (n - 1) * s + keff - 2 * pad + output_padding


def conv2d_transpose(x, w, b=None, strides=(1, 1), padding="valid", output_padding=None, dilation=(1, 1)):
    """Each input pixel scatters its kernel-weighted copy into the output (w: (kh, kw, F, Cin)), the
    output being cropped by the padding the matching convolution of the output would use."""
    x = np.asarray(x, np.float64)
    N, H, W, C = x.shape
    R, S, F, _ = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    op = output_padding or (None, None)
    Ho = deconv_length(H, R, sh, dh, padding, op[0])
    Wo = deconv_length(W, S, sw, dw, padding, op[1])
    pt, _, pl, _ = resolve_pads(padding, Ho, Wo, R, S, sh, sw, dh, dw)
    y = np.zeros((N, Ho, Wo, F))
    for i in range(H):
        for j in range(W):
            for r in range(R):
                for s in range(S):
                    oh, ow = i * sh - pt + r * dh, j * sw - pl + s * dw
                    if 0 <= oh < Ho and 0 <= ow < Wo:
                        y[:, oh, ow, :] += x[:, i, j, :] @ w[r, s].T
    return y + (0 if b is None else b)


def resize_matrix(n, f, bilinear):
    """(n*f, n): the linear map of one axis of UpSampling2D (TensorFlow's half-pixel bilinear rule)."""
    A = np.zeros((n * f, n))
    for o in range(n * f):
        if not bilinear:
            A[o, o // f] = 1
            continue
        s = (o + 0.5) / f - 0.5
        lo, hi = max(int(np.floor(s)), 0), min(int(np.ceil(s)), n - 1)
        t = s - np.floor(s)
        A[o, lo] += 1 - t
        A[o, hi] += t
    return A


def upsampling2d(x, size, bilinear=False):
    Ah, Aw = resize_matrix(x.shape[1], size[0], bilinear), resize_matrix(x.shape[2], size[1], bilinear)
    return np.einsum("ph,nhwc,qw->npqc", Ah, np.asarray(x, np.float64), Aw)


# ---- 1-D layers --------------------------------------------------------------------------------------
def _pads_1d(L, k, s, d, padding):
    if padding == "causal":
        return (k - 1) * d, 0
    if padding == "same":
        return same_pad(L, k, s, d)
    return 0, 0


def conv1d(x, w, b=None, stride=1, padding="valid", dilation=1):
    """x (N, L, C), w (k, C, F): y[n, t] = sum_j xpad[n, t*stride + j*dilation] @ w[j]."""
    k = w.shape[0]
    before, after = _pads_1d(x.shape[1], k, stride, dilation, padding)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (before, after), (0, 0)))
    T = (xp.shape[1] - (k - 1) * dilation - 1) // stride + 1
    y = np.stack([sum(xp[:, t * stride + j * dilation] @ w[j] for j in range(k)) for t in range(T)], axis=1)
    return y + (0 if b is None else b)


def pool1d(x, size, stride, padding, op):
    """Max or average over windows of steps; 'same' pads with positions that are not counted."""
    before, after = _pads_1d(x.shape[1], size, stride, 1, padding)
    L = x.shape[1]
    T = (L + before + after - size) // stride + 1
    out = []
    for t in range(T):
        lo, hi = max(t * stride - before, 0), min(t * stride - before + size, L)
        win = np.asarray(x[:, lo:hi], np.float64)
        out.append(win.max(axis=1) if op == "max" else win.mean(axis=1))
    return np.stack(out, axis=1)


def grouped_conv2d(x, w, b=None, groups=1, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """w (kh, kw, C/groups, K): output group g is the convolution of input group g with its filters."""
    C, K = x.shape[-1], w.shape[-1]
    cg, kg = C // groups, K // groups
    y = np.concatenate([conv2d(x[..., g * cg:(g + 1) * cg], w[..., g * kg:(g + 1) * kg], None, strides, padding,
                               dilation) for g in range(groups)], axis=-1)
    return y + (0 if b is None else b)


def depthwise_conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """w (kh, kw, C, m): output channel c*m + j is input channel c convolved with w[..., c, j]."""
    kh, kw, C, m = w.shape
    return grouped_conv2d(x, w.reshape(kh, kw, 1, C * m), b, C, strides, padding, dilation)


# ---- image preprocessing (the layers of cnnbp.layers.preprocessing) -----------------------------
_NP_PAD = {"reflect": "symmetric", "wrap": "wrap", "nearest": "edge"}


def warp(x, A, interpolation="bilinear", fill_mode="constant", fill_value=0.0, out_hw=None):
    """x [H, W, C] read at the source points u = A[0] j + A[1] i + A[2], v = A[3] j + A[4] i + A[5]
    of each output pixel (row i, column j), bilinear or nearest; outside pixels come from a
    padded copy (numpy's pad modes) or are fill_value."""
    H, W, C = x.shape
    Ho, Wo = out_hw or (H, W)
    P = 3 * max(H, W)
    if fill_mode == "constant":
        xp = np.pad(x, ((P, P), (P, P), (0, 0)), constant_values=fill_value)
    else:
        xp = np.pad(x, ((P, P), (P, P), (0, 0)), mode=_NP_PAD[fill_mode])
    i, j = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")
    u = A[0] * j + A[1] * i + A[2]
    v = A[3] * j + A[4] * i + A[5]
    if interpolation == "nearest":
        return xp[np.floor(v + 0.5).astype(int) + P, np.floor(u + 0.5).astype(int) + P]
    u0, v0 = np.floor(u), np.floor(v)
    du, dv = (u - u0)[..., None], (v - v0)[..., None]
    u0, v0 = u0.astype(int) + P, v0.astype(int) + P
    return ((1 - dv) * ((1 - du) * xp[v0, u0] + du * xp[v0, u0 + 1])
            + dv * ((1 - du) * xp[v0 + 1, u0] + du * xp[v0 + 1, u0 + 1]))


def rotation_map(H, W, turns):
    """The source map of a counter-clockwise rotation by `turns` of a full turn about the centre."""
    t = 2 * np.pi * turns
    c, s = np.cos(t), np.sin(t)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    return [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy]


def zoom_map(H, W, zy, zx):
    cx, cy = (W - 1) / 2, (H - 1) / 2
    return [1 + zx, 0, cx - (1 + zx) * cx, 0, 1 + zy, cy - (1 + zy) * cy]


# ---- learning-rate schedules and gradient clipping (Keras's definitions) -----------------------
def schedule(name, step, **c):
    """The learning rate Keras's schedule `name` gives at 0-based step `step`."""
    lr0 = c.get("initial_learning_rate")
    if name == "ExponentialDecay":
        e = step / c["decay_steps"]
        return lr0 * c["decay_rate"] ** (np.floor(e) if c.get("staircase") else e)
    if name == "PiecewiseConstantDecay":
        return c["values"][int(np.searchsorted(c["boundaries"], step, side="left"))]
    if name == "PolynomialDecay":
        end, power, d = c.get("end_learning_rate", 1e-4), c.get("power", 1.0), c["decay_steps"]
        if c.get("cycle"):
            d = d * max(1.0, np.ceil(step / d))
        else:
            step = min(step, d)
        return (lr0 - end) * (1 - step / d) ** power + end
    if name == "CosineDecay":
        alpha, d = c.get("alpha", 0.0), c["decay_steps"]
        target, w = c.get("warmup_target"), c.get("warmup_steps", 0)
        if target is not None:
            if step < w:
                return lr0 + (target - lr0) * step / w
            step, lr0 = min(step - w, d), target
        step = min(step, d)
        return lr0 * ((1 - alpha) * 0.5 * (1 + np.cos(np.pi * step / d)) + alpha)
    if name == "CosineDecayRestarts":
        d, t_mul, m_mul, alpha = c["first_decay_steps"], c.get("t_mul", 2.0), c.get("m_mul", 1.0), c.get("alpha", 0.0)
        i, start, period = 0, 0.0, d               # walk the periods: restart i lasts d * t_mul^i steps
        while step >= start + period:
            start, period, i = start + period, period * t_mul, i + 1
        frac = (step - start) / period
        return lr0 * ((1 - alpha) * 0.5 * m_mul ** i * (1 + np.cos(np.pi * frac)) + alpha)
    raise ValueError(name)


def clip_gradients(g, tensors, clipnorm=None, clipvalue=None, global_clipnorm=None):
    """Keras's clipping of the flat gradient g; tensors: (offset, size) of each parameter tensor."""
    g = g.copy()
    if clipnorm:
        for o, n in tensors:
            norm = np.linalg.norm(g[o:o + n])
            g[o:o + n] *= clipnorm / max(norm, clipnorm)
    elif global_clipnorm:
        norm = np.sqrt(sum(np.sum(g[o:o + n] ** 2) for o, n in tensors))
        for o, n in tensors:
            g[o:o + n] *= global_clipnorm / max(norm, global_clipnorm)
    elif clipvalue:
        g = np.clip(g, -clipvalue, clipvalue)
    return g
