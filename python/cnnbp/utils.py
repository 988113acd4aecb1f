"""Small helpers Keras users expect."""

import numpy as np

__all__ = ["to_categorical", "Sequence", "PyDataset"]


class Sequence:
    """Batches by index, Keras's ``PyDataset`` (``keras.utils.Sequence``) interface: subclass it and
    define ``__len__`` (batches per epoch) and ``__getitem__(i)`` (batch i: ``(x, y)``,
    ``(x, y, sample_weight)``, or ``x`` for predict); ``on_epoch_end()`` runs after every epoch
    (reshuffle there). fit/evaluate/predict read it in order, the next batches fetched in a
    background thread while the step runs. Keras's ``workers``/``use_multiprocessing``/
    ``max_queue_size`` arguments are accepted and ignored (one thread, ten batches ahead)."""

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        pass

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError

    def on_epoch_end(self):
        pass


PyDataset = Sequence


def to_categorical(y, num_classes=None, dtype="float32"):
    """Integer class labels -> one-hot rows."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.number):
        raise TypeError(f"to_categorical: expected integer labels, got dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.size and (np.any(y != np.round(y)) or y.min() < 0):
        raise ValueError("to_categorical: labels must be non-negative integers")
    y = y.astype(np.int64)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: label {int(y.max())} out of range for num_classes={num_classes}")
    out = np.zeros(y.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out
