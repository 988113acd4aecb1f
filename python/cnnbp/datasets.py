"""Datasets: Fashion-MNIST and MNIST from IDX files (as Debian's dataset-fashion-mnist installs
them), returned like Keras's loaders: ((x_train, y_train), (x_test, y_test)) as uint8 arrays,
images (N, 28, 28)."""

import gzip
import os
import struct

import numpy as np

__all__ = ["load_idx", "load_fashion_mnist", "load_mnist"]

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path):
    """Read one IDX file (optionally .gz) into a numpy array."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"load_idx: no such file: {path}") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"load_idx: cannot read {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"load_idx: {path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"load_idx: {path} has a truncated header")
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != count * dtype.itemsize:
        raise ValueError(f"load_idx: {path} holds {len(data) - header} data bytes, its header promises "
                         f"{count * dtype.itemsize} (shape {shape}): truncated or corrupt")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _find(dirs, stem):
    for d in dirs:
        for name in (stem + ".gz", stem):
            p = os.path.join(d, name)
            if os.path.exists(p):
                return p
    return None


def _load(kind, path, default_dirs, how_to_get):
    dirs = []
    if path is not None:
        dirs.append(os.fspath(path))
    elif os.environ.get("CNNBP_DATA"):
        base = os.environ["CNNBP_DATA"]
        dirs += [os.path.join(base, kind), base]
    else:
        dirs += default_dirs
    found = {k: _find(dirs, stem) for k, stem in _FILES.items()}
    missing = [_FILES[k] for k, v in found.items() if v is None]
    if missing:
        raise FileNotFoundError(f"{kind}: could not find {', '.join(missing)} (.gz or plain) in "
                                f"{', '.join(dirs)}. {how_to_get}")
    xtr, ytr = load_idx(found["train_images"]), load_idx(found["train_labels"])
    xte, yte = load_idx(found["test_images"]), load_idx(found["test_labels"])
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"{kind}: image and label counts differ ({len(xtr)}/{len(ytr)}, {len(xte)}/{len(yte)})")
    return (xtr, ytr), (xte, yte)


def load_fashion_mnist(path=None):
    """Fashion-MNIST: 60,000 training and 10,000 test images of 10 clothing classes.

    Looks in ``path``, else ``$CNNBP_DATA`` (and ``$CNNBP_DATA/fashion-mnist``), else
    /usr/share/datasets/fashion-mnist (Debian/Ubuntu: ``apt-get install dataset-fashion-mnist``)."""
    return _load("fashion-mnist", path, [os.path.join(os.sep, "usr", "share", "datasets", "fashion-mnist")],
                 "Install it with 'apt-get install dataset-fashion-mnist', or download the four IDX files "
                 "from github.com/zalandoresearch/fashion-mnist and pass path= or set CNNBP_DATA.")


def load_mnist(path=None):
    """MNIST digits from the same IDX layout (``path``, ``$CNNBP_DATA/mnist``, or Debian's location)."""
    return _load("mnist", path, [os.path.join(os.sep, "usr", "share", "datasets", "mnist")],
                 "Download the four IDX files of MNIST and pass path= or set CNNBP_DATA.")
