"""Losses: Keras names. Each is callable as ``loss(y_true, y_pred)`` (returns the mean loss) and
selects the C++ loss the network trains with. A final softmax (sigmoid) layer followed by
categorical (binary) cross-entropy is trained through the fused, numerically stable form from
logits."""

import numpy as np

__all__ = ["Loss", "MeanSquaredError", "BinaryCrossentropy", "CategoricalCrossentropy",
           "SparseCategoricalCrossentropy", "MeanAbsoluteError", "Huber", "LogCosh", "KLDivergence", "Hinge",
           "SquaredHinge", "CategoricalHinge", "Poisson", "CosineSimilarity", "get",
           "mean_squared_error", "mse", "mean_absolute_error", "mae", "huber", "log_cosh", "kl_divergence",
           "hinge", "squared_hinge", "categorical_hinge", "poisson", "cosine_similarity",
           "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"]


class Loss:
    """Base class: a loss is called as loss(y_true, y_pred) and selects the C++ loss for training."""

    kind = None          # C++ loss name on probabilities / values
    logits_kind = None   # C++ loss name when from_logits=True
    sparse = False
    delta = 1.0          # Huber's threshold (the other losses ignore it)
    label_smoothing = 0.0

    def __init__(self, from_logits=False, name=None, reduction="sum_over_batch_size"):
        if reduction not in ("sum_over_batch_size", "auto", None):
            raise ValueError(f"{type(self).__name__}: only reduction='sum_over_batch_size' is supported")
        self.from_logits = bool(from_logits)
        if self.from_logits and self.logits_kind is None:
            raise ValueError(f"{type(self).__name__}: from_logits is not meaningful for this loss")
        self.name = name or _snake_names[type(self)]

    @property
    def core_kind(self):
        return self.logits_kind if self.from_logits else self.kind

    def __call__(self, y_true, y_pred):
        from . import ops
        y_pred = np.asarray(y_pred)
        dt = np.float64 if y_pred.dtype == np.float64 else np.float32
        y_pred = np.ascontiguousarray(y_pred, dtype=dt)
        if y_pred.ndim == 1:
            y_pred = y_pred[:, None]
        y_true = np.asarray(y_true, dtype=dt)
        kind = self.core_kind
        if self.sparse:
            y_true = y_true.reshape(-1)
        else:
            y_true = y_true.reshape(y_pred.shape)
        s = self.label_smoothing
        if s:
            k = y_pred.reshape(len(y_pred), -1).shape[1]
            if self.sparse:
                y_true = np.eye(k, dtype=dt)[y_true.astype(np.int64)]
                kind = kind.replace("sparse_", "")
            add = s / 2 if "binary" in kind else s / k
            y_true = y_true * (1 - s) + add
        value, _, _ = ops.loss(y_pred.reshape(len(y_pred), -1), y_true, kind, delta=self.delta)
        return value

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)^2) over every element."""
    kind = "mean_squared_error"


class _Smoothed(Loss):
    """A cross-entropy with label smoothing: targets t(1 - s) + s/K (binary: + s/2)."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size", name=None):
        super().__init__(from_logits, name, reduction)
        if axis != -1:
            raise ValueError(f"{type(self).__name__}: only axis=-1 is supported, got {axis!r}")
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
                or not 0 <= label_smoothing <= 1:
            raise ValueError(f"{type(self).__name__}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def get_config(self):
        return dict(super().get_config(), label_smoothing=self.label_smoothing)


class BinaryCrossentropy(_Smoothed):
    """-mean(t log p + (1 - t) log(1 - p)), p clipped to [1e-7, 1 - 1e-7]; or from logits.
    label_smoothing s: targets t(1 - s) + s/2."""
    kind = "binary_crossentropy"
    logits_kind = "binary_crossentropy_from_logits"


class CategoricalCrossentropy(_Smoothed):
    """-sum_k t_k log p_k per sample (one-hot or soft targets), mean over the batch.
    label_smoothing s: targets t(1 - s) + s/K."""
    kind = "categorical_crossentropy"
    logits_kind = "categorical_crossentropy_from_logits"


class SparseCategoricalCrossentropy(_Smoothed):
    """Categorical cross-entropy with integer class labels as targets. label_smoothing (a cnnbp
    extension; Keras has it on CategoricalCrossentropy only): the labels as one-hot rows smoothed
    to (1 - s) + s/K and s/K."""
    kind = "sparse_categorical_crossentropy"
    logits_kind = "sparse_categorical_crossentropy_from_logits"
    sparse = True

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size", name=None,
                 ignore_class=None):
        if ignore_class is not None:
            raise ValueError("SparseCategoricalCrossentropy: ignore_class is not supported")
        super().__init__(from_logits, label_smoothing, -1, reduction, name)


class _Regression(Loss):
    """A loss with no from_logits argument (Keras's signature: reduction, name)."""

    def __init__(self, reduction="sum_over_batch_size", name=None):
        super().__init__(False, name, reduction)

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}()"


class MeanAbsoluteError(_Regression):
    """mean(|y_pred - y_true|) over every element."""
    kind = "mean_absolute_error"


class Huber(_Regression):
    """mean over every element of 0.5 e^2 where |e| <= delta, delta (|e| - 0.5 delta) elsewhere."""
    kind = "huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss"):
        import math
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta <= 0:
            raise ValueError(f"Huber: delta must be a finite number > 0, got {delta!r}")
        super().__init__(reduction, name)
        self.delta = float(delta)

    def get_config(self):
        return {"name": self.name, "delta": self.delta}

    def __repr__(self):
        return f"Huber(delta={self.delta})"


class LogCosh(_Regression):
    """mean(log(cosh(y_pred - y_true))) over every element."""
    kind = "log_cosh"


class KLDivergence(_Regression):
    """sum_k t log(t / p) per sample (both clipped to [1e-7, 1]), mean over the batch."""
    kind = "kl_divergence"


class Hinge(_Regression):
    """mean(max(1 - t * y_pred, 0)); targets in {0, 1} are read as {-1, 1} (Keras's rule, per batch)."""
    kind = "hinge"


class SquaredHinge(_Regression):
    """mean(max(1 - t * y_pred, 0)^2), targets as for Hinge."""
    kind = "squared_hinge"


class CategoricalHinge(_Regression):
    """max(max_k (1 - t_k) p_k - sum_k t_k p_k + 1, 0) per sample, mean over the batch."""
    kind = "categorical_hinge"


class Poisson(_Regression):
    """mean(y_pred - y_true * log(y_pred + 1e-7)) over every element."""
    kind = "poisson"


class CosineSimilarity(_Regression):
    """-(t/|t|) . (p/|p|) per sample (over the last axis), mean over the batch: -1 is a perfect match."""
    kind = "cosine_similarity"

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity"):
        if axis != -1:
            raise ValueError(f"CosineSimilarity: only axis=-1 is supported, got {axis!r}")
        super().__init__(reduction, name)


_KERAS_NAMES = {   # class -> (the name Keras gives it, its other string spellings)
    MeanSquaredError: ("mean_squared_error", "mse", "MSE"),
    BinaryCrossentropy: ("binary_crossentropy",),
    CategoricalCrossentropy: ("categorical_crossentropy",),
    SparseCategoricalCrossentropy: ("sparse_categorical_crossentropy",),
    MeanAbsoluteError: ("mean_absolute_error", "mae", "MAE"),
    Huber: ("huber_loss", "huber"),
    LogCosh: ("log_cosh", "logcosh"),
    KLDivergence: ("kl_divergence", "kld", "KLD", "kullback_leibler_divergence"),
    Hinge: ("hinge",),
    SquaredHinge: ("squared_hinge",),
    CategoricalHinge: ("categorical_hinge",),
    Poisson: ("poisson",),
    CosineSimilarity: ("cosine_similarity",),
}
_snake_names = {c: names[0] for c, names in _KERAS_NAMES.items()}
_BY_NAME = {n: c for c, names in _KERAS_NAMES.items() for n in names + (c.__name__,)}
_BY_CLASS_NAME = {c.__name__: c for c in _KERAS_NAMES}   # saved files name the class


def get(identifier):
    """A Loss from a name or a Loss instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        names = ", ".join(repr(n[0]) for n in _KERAS_NAMES.values())
        raise ValueError(f"loss: unknown loss {identifier!r}; expected one of {names} (or a cnnbp.losses.Loss)")
    if callable(identifier):
        raise TypeError(
            f"loss: a Python function ({getattr(identifier, '__name__', type(identifier).__name__)}) cannot be "
            "trained with: cnnbp computes the loss and its gradient in C++ inside the training step, so the loss "
            "must be one of cnnbp.losses (by name or as an object); the ones above cover Keras's built-in losses")
    raise TypeError(f"loss: expected a name or a cnnbp.losses.Loss, got {type(identifier).__name__}")


def mean_squared_error(y_true, y_pred):
    """Mean of (y_pred - y_true)^2."""
    return MeanSquaredError()(y_true, y_pred)


mse = mean_squared_error  # Keras's alias


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Mean binary cross-entropy."""
    return BinaryCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Mean categorical cross-entropy with one-hot (or soft) targets."""
    return CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Mean categorical cross-entropy with integer labels."""
    return SparseCategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    """Mean of |y_pred - y_true|."""
    return MeanAbsoluteError()(y_true, y_pred)


mae = mean_absolute_error  # Keras's alias


def huber(y_true, y_pred, delta=1.0):
    """Mean Huber loss."""
    return Huber(delta)(y_true, y_pred)


def log_cosh(y_true, y_pred):
    """Mean log(cosh(y_pred - y_true))."""
    return LogCosh()(y_true, y_pred)


def kl_divergence(y_true, y_pred):
    """Mean over the batch of sum_k t log(t / p)."""
    return KLDivergence()(y_true, y_pred)


def hinge(y_true, y_pred):
    """Mean hinge loss."""
    return Hinge()(y_true, y_pred)


def squared_hinge(y_true, y_pred):
    """Mean squared hinge loss."""
    return SquaredHinge()(y_true, y_pred)


def categorical_hinge(y_true, y_pred):
    """Mean categorical hinge loss."""
    return CategoricalHinge()(y_true, y_pred)


def poisson(y_true, y_pred):
    """Mean Poisson loss."""
    return Poisson()(y_true, y_pred)


def cosine_similarity(y_true, y_pred, axis=-1):
    """Mean over the batch of -cos(y_true, y_pred)."""
    return CosineSimilarity(axis)(y_true, y_pred)
