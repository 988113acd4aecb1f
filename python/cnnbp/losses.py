"""Losses: Keras names. Each is callable as ``loss(y_true, y_pred)`` (returns the mean loss) and
selects the C++ loss the network trains with. A final softmax (sigmoid) layer followed by
categorical (binary) cross-entropy is trained through the fused, numerically stable form from
logits."""

import numpy as np

__all__ = ["Loss", "MeanSquaredError", "BinaryCrossentropy", "CategoricalCrossentropy",
           "SparseCategoricalCrossentropy", "get", "mean_squared_error", "mse",
           "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"]


class Loss:
    """Base class: a loss is called as loss(y_true, y_pred) and selects the C++ loss for training."""

    kind = None          # C++ loss name on probabilities / values
    logits_kind = None   # C++ loss name when from_logits=True
    sparse = False

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
        if self.sparse:
            y_true = y_true.reshape(-1)
        else:
            y_true = y_true.reshape(y_pred.shape)
        value, _, _ = ops.loss(y_pred.reshape(len(y_pred), -1), y_true, self.core_kind)
        return value

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)^2) over every element."""
    kind = "mean_squared_error"


class BinaryCrossentropy(Loss):
    """-mean(t log p + (1 - t) log(1 - p)), p clipped to [1e-7, 1 - 1e-7]; or from logits."""
    kind = "binary_crossentropy"
    logits_kind = "binary_crossentropy_from_logits"


class CategoricalCrossentropy(Loss):
    """-sum_k t_k log p_k per sample (one-hot or soft targets), mean over the batch."""
    kind = "categorical_crossentropy"
    logits_kind = "categorical_crossentropy_from_logits"


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy with integer class labels as targets."""
    kind = "sparse_categorical_crossentropy"
    logits_kind = "sparse_categorical_crossentropy_from_logits"
    sparse = True


_snake_names = {
    MeanSquaredError: "mean_squared_error",
    BinaryCrossentropy: "binary_crossentropy",
    CategoricalCrossentropy: "categorical_crossentropy",
    SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
}

_BY_NAME = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError, "MeanSquaredError": MeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy, "BinaryCrossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy, "CategoricalCrossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "SparseCategoricalCrossentropy": SparseCategoricalCrossentropy,
}


def get(identifier):
    """A Loss from a name or a Loss instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        raise ValueError(f"loss: unknown loss {identifier!r}; expected one of "
                         "'categorical_crossentropy', 'sparse_categorical_crossentropy', "
                         "'binary_crossentropy', 'mean_squared_error' (or a cnnbp.losses.Loss)")
    raise TypeError(f"loss: expected a name or a cnnbp.losses.Loss, got {type(identifier).__name__}")


def mean_squared_error(y_true, y_pred):
    """Mean of (y_pred - y_true)^2."""
    return MeanSquaredError()(y_true, y_pred)


mse = mean_squared_error  # Keras's alias


def binary_crossentropy(y_true, y_pred, from_logits=False):
    """Mean binary cross-entropy."""
    return BinaryCrossentropy(from_logits=from_logits)(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Mean categorical cross-entropy with one-hot (or soft) targets."""
    return CategoricalCrossentropy(from_logits=from_logits)(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Mean categorical cross-entropy with integer labels."""
    return SparseCategoricalCrossentropy(from_logits=from_logits)(y_true, y_pred)
