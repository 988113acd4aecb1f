"""Metrics: Keras's names. During fit/evaluate each metric is a set of per-batch sums computed in
C++ with the loss (csrc/kernels/metric.h); the epoch's value is worked out from the totals here.
A metric object also works on its own, as in Keras: ``update_state(y_true, y_pred)``,
``result()``, ``reset_state()``.

Predictions are probabilities: when the loss is fused with a final softmax or sigmoid, the
network's logits are turned back into probabilities before a metric sees them."""

import math
import numbers

import numpy as np

__all__ = ["Metric", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
           "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "MeanAbsoluteError", "MeanSquaredError",
           "RootMeanSquaredError", "Precision", "Recall", "AUC", "F1Score", "get"]

# kinds of csrc/kernels/metric.h
_ACCURACY, _BINARY, _CATEGORICAL, _TOP_K, _MAE, _MSE, _CONFUSION, _PER_CLASS, _AUC = range(9)


def _ratio(a, b):
    return float(a) / float(b) if b else 0.0


class Metric:
    """Base class. Subclasses name the C++ kind and its arguments, and turn the sums into a value."""

    _kind = _ACCURACY
    _default_name = "metric"

    def __init__(self, name=None, dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {type(name).__name__}")
        self.name = name or self._default_name
        self._sums = None
        self._count = 0

    # the C++ side
    def _spec(self):
        """(kind, k, threshold, class_id, bins) for Network.set_metrics."""
        return (self._kind, 5, 0.5, -1, 200)

    def _size(self, K):
        kind = self._kind
        return 3 if kind == _CONFUSION else 3 * K if kind == _PER_CLASS else 2 * (self._spec()[4] + 1) \
            if kind == _AUC else 1

    def _value(self, sums, count):
        """The metric from its summed counts over `count` samples (per-sample means by default)."""
        return _ratio(sums[0], count)

    # standalone use, as a Keras metric object
    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch (numpy arrays: y_pred (N, K) or (N,), y_true the same shape or (N,) labels)."""
        from . import ops
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}: sample_weight is not supported")
        y_pred = np.asarray(y_pred, dtype=np.float64)
        if y_pred.ndim == 1:
            y_pred = y_pred[:, None]
        y_pred = np.ascontiguousarray(y_pred.reshape(len(y_pred), -1))
        y_true = np.asarray(y_true, dtype=np.float64)
        sparse = y_true.size == len(y_pred) and y_pred.shape[1] > 1
        y_true = np.ascontiguousarray(y_true.reshape(-1) if sparse else y_true.reshape(y_pred.shape))
        kind, k, threshold, class_id, bins = self._spec()
        sums = ops.metric_sums(y_pred, y_true, kind, k=k, threshold=threshold, class_id=class_id, bins=bins,
                               sparse=sparse)
        self._sums = sums if self._sums is None else self._sums + sums
        self._count += len(y_pred)

    def result(self):
        if self._sums is None:
            return 0.0
        return self._value(self._sums, self._count)

    def reset_state(self):
        self._sums, self._count = None, 0

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class Accuracy(Metric):
    """Keras's 'accuracy': argmax match (one-hot or integer targets), or for one output
    (prediction > 0.5) == (target > 0.5)."""
    _kind, _default_name = _ACCURACY, "accuracy"


class CategoricalAccuracy(Metric):
    """argmax(y_pred) == argmax(y_true) (integer targets: the label)."""
    _kind, _default_name = _CATEGORICAL, "categorical_accuracy"


class SparseCategoricalAccuracy(CategoricalAccuracy):
    """argmax(y_pred) == the integer label."""
    _default_name = "sparse_categorical_accuracy"


class BinaryAccuracy(Metric):
    """Per sample the fraction of outputs with (y_pred > threshold) == (y_true > 0.5)."""
    _kind, _default_name = _BINARY, "binary_accuracy"

    def __init__(self, name=None, dtype=None, threshold=0.5):
        super().__init__(name, dtype)
        self.threshold = _threshold(type(self).__name__, threshold)

    def _spec(self):
        return (self._kind, 5, self.threshold, -1, 200)

    def get_config(self):
        return dict(super().get_config(), threshold=self.threshold)


class TopKCategoricalAccuracy(Metric):
    """The true class is among the k highest predictions."""
    _kind, _default_name = _TOP_K, "top_k_categorical_accuracy"

    def __init__(self, k=5, name=None, dtype=None):
        super().__init__(name, dtype)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"{type(self).__name__}: k must be an int >= 1, got {k!r}")
        self.k = int(k)

    def _spec(self):
        return (self._kind, self.k, 0.5, -1, 200)

    def get_config(self):
        return dict(super().get_config(), k=self.k)


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Top-k accuracy with integer labels."""
    _default_name = "sparse_top_k_categorical_accuracy"


class MeanAbsoluteError(Metric):
    """Mean over samples of mean |y_pred - y_true|."""
    _kind, _default_name = _MAE, "mean_absolute_error"


class MeanSquaredError(Metric):
    """Mean over samples of mean (y_pred - y_true)^2."""
    _kind, _default_name = _MSE, "mean_squared_error"


class RootMeanSquaredError(MeanSquaredError):
    """sqrt of the mean squared error over every sample seen."""
    _default_name = "root_mean_squared_error"

    def _value(self, sums, count):
        return math.sqrt(_ratio(sums[0], count))


class _Confusion(Metric):
    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name, dtype)
        cls = type(self).__name__
        if top_k is not None:
            raise ValueError(f"{cls}: top_k is not supported")
        self.thresholds = _threshold(cls, 0.5 if thresholds is None else thresholds)
        if class_id is not None and (isinstance(class_id, bool) or not isinstance(class_id, numbers.Integral)
                                     or class_id < 0):
            raise ValueError(f"{cls}: class_id must be an int >= 0, got {class_id!r}")
        self.class_id = None if class_id is None else int(class_id)

    def _spec(self):
        return (_CONFUSION, 5, self.thresholds, -1 if self.class_id is None else self.class_id, 200)

    def get_config(self):
        return dict(super().get_config(), thresholds=self.thresholds, class_id=self.class_id)


class Precision(_Confusion):
    """TP / (TP + FP) over every output (or class_id's), a prediction counting when > thresholds."""
    _kind, _default_name = _CONFUSION, "precision"

    def _value(self, sums, count):
        return _ratio(sums[0], sums[0] + sums[1])


class Recall(_Confusion):
    """TP / (TP + FN) over every output (or class_id's), a prediction counting when > thresholds."""
    _kind, _default_name = _CONFUSION, "recall"

    def _value(self, sums, count):
        return _ratio(sums[0], sums[0] + sums[2])


class AUC(Metric):
    """Area under the ROC curve over every output (Keras's: num_thresholds evenly spaced
    thresholds, trapezoidal rule)."""
    _kind, _default_name = _AUC, "auc"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None, dtype=None,
                 thresholds=None, multi_label=False, num_labels=None, label_weights=None, from_logits=False):
        super().__init__(name, dtype)
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral) \
                or not 1 < num_thresholds <= 100000:
            raise ValueError(f"AUC: num_thresholds must be an int in (1, 100000], got {num_thresholds!r}")
        for arg, v, ok in (("curve", curve, "ROC"), ("summation_method", summation_method, "interpolation")):
            if v != ok:
                raise ValueError(f"AUC: only {arg}={ok!r} is supported, got {v!r}")
        if thresholds is not None or multi_label or label_weights is not None or from_logits:
            raise ValueError("AUC: thresholds, multi_label, label_weights and from_logits are not supported")
        self.num_thresholds = int(num_thresholds)

    def _spec(self):
        return (_AUC, 5, 0.5, -1, self.num_thresholds)

    def _value(self, sums, count):
        B = self.num_thresholds
        pos, neg = np.asarray(sums[: B + 1]), np.asarray(sums[B + 1:])
        # at threshold j, the predictions with more than j thresholds below them are positive
        tp = np.cumsum(pos[::-1])[::-1][1:]
        fp = np.cumsum(neg[::-1])[::-1][1:]
        P, N = pos.sum(), neg.sum()
        tpr = tp / P if P else np.zeros(B)
        fpr = fp / N if N else np.zeros(B)
        return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))

    def get_config(self):
        return dict(super().get_config(), num_thresholds=self.num_thresholds)


class F1Score(Metric):
    """Per class 2TP / (2TP + FP + FN); a prediction is the argmax (threshold=None) or every output
    above threshold. average: None (one value per class), 'micro', 'macro' or 'weighted'."""
    _kind, _default_name = _PER_CLASS, "f1_score"

    def __init__(self, average=None, threshold=None, name=None, dtype=None):
        super().__init__(name, dtype)
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(f"F1Score: average must be None, 'micro', 'macro' or 'weighted', got {average!r}")
        self.average = average
        self.threshold = None if threshold is None else _threshold("F1Score", threshold)

    def _spec(self):
        return (_PER_CLASS, 5, -1.0 if self.threshold is None else self.threshold, -1, 200)

    def _value(self, sums, count):
        c = np.asarray(sums).reshape(-1, 3)
        tp, fp, fn = c[:, 0], c[:, 1], c[:, 2]
        if self.average == "micro":
            return _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())
        den = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0)
        if self.average is None:
            return f1
        if self.average == "macro":
            return float(f1.mean())
        support = tp + fn
        return _ratio((f1 * support).sum(), support.sum())

    def get_config(self):
        return dict(super().get_config(), average=self.average, threshold=self.threshold)


def _threshold(cls, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or not 0 <= v <= 1:
        raise ValueError(f"{cls}: threshold must be a number in [0, 1], got {v!r}")
    return float(v)


_CLASSES = (Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
            SparseTopKCategoricalAccuracy, MeanAbsoluteError, MeanSquaredError, RootMeanSquaredError, Precision,
            Recall, AUC, F1Score)
_BY_NAME = {c._default_name: c for c in _CLASSES}
_BY_NAME.update({c.__name__: c for c in _CLASSES})
_BY_NAME.update({"acc": Accuracy, "mae": MeanAbsoluteError, "mse": MeanSquaredError, "MAE": MeanAbsoluteError,
                 "MSE": MeanSquaredError, "rmse": RootMeanSquaredError})


def get(identifier):
    """A Metric from a Keras name ('accuracy', 'acc', 'mae', 'AUC', ...: logged under that name),
    a Metric class or instance, or a saved configuration."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier)
        if cls is None:
            names = ", ".join(repr(c._default_name) for c in _CLASSES)
            raise ValueError(f"metrics: unknown metric {identifier!r}; expected one of {names}, 'acc', 'mae', "
                             "'mse' (or a cnnbp.metrics.Metric)")
        return cls(name=identifier) if identifier[:1].islower() else cls()
    if isinstance(identifier, dict) and identifier.get("class_name") in {c.__name__ for c in _CLASSES}:
        cfg = dict(identifier.get("config", {}))
        return {c.__name__: c for c in _CLASSES}[identifier["class_name"]](**cfg)
    if callable(identifier):
        raise TypeError(f"metrics: a Python function ({getattr(identifier, '__name__', type(identifier).__name__)}) "
                        "cannot be a metric: cnnbp computes metrics in C++ with the loss; use one of "
                        "cnnbp.metrics (by name or as an object)")
    raise TypeError(f"metrics: expected a name or a cnnbp.metrics.Metric, got {type(identifier).__name__}")


def _serialize(m):
    return {"class_name": type(m).__name__, "config": m.get_config()}


class _Tracker:
    """The compiled metrics of a model over an epoch (or an evaluation): sums added per batch."""

    def __init__(self, metrics, K):
        self.metrics = list(metrics)
        sizes = [m._size(K) for m in self.metrics]
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.total = np.zeros(int(self.bounds[-1]))
        self.count = 0

    def reset(self):
        self.total[:] = 0
        self.count = 0

    def add(self, sums, n):
        self.total += sums
        self.count += n

    def values(self, prefix=""):
        out = {}
        for m, a, b in zip(self.metrics, self.bounds[:-1], self.bounds[1:]):
            out[prefix + m.name] = m._value(self.total[a:b], self.count)
        return out
