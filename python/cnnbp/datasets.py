"""Datasets: Fashion-MNIST and MNIST from IDX files (as Debian's dataset-fashion-mnist installs
them), returned like Keras's loaders: ((x_train, y_train), (x_test, y_test)) as uint8 arrays,
images (N, 28, 28)."""

import gzip
import os
import struct
import sys

import numpy as np

__all__ = ["load_idx", "load_fashion_mnist", "load_mnist", "load_npz", "load_image_folder", "FASHION_MNIST_CLASSES",
           "fashion_mnist", "mnist"]

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
_BUNDLED = os.path.join(os.path.dirname(__file__), "data", "fashion_mnist_subset.npz")
_told = set()

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


_FASHION_HOW = ("Install it with 'apt-get install dataset-fashion-mnist', or download the four IDX files "
                "from github.com/zalandoresearch/fashion-mnist and pass path= or set CNNBP_DATA.")


def load_fashion_mnist(path=None, subset=None):
    """Fashion-MNIST: 60,000 training and 10,000 test images of 10 clothing classes (28x28 uint8).

    Looks in ``path``, else ``$CNNBP_DATA`` (and ``$CNNBP_DATA/fashion-mnist``), else
    /usr/share/datasets/fashion-mnist (Debian/Ubuntu: ``apt-get install dataset-fashion-mnist``).
    When none of these is given and the default location is empty, it returns the subset shipped
    with cnnbp (6,000 training and 1,000 test images, class-balanced) and says so once.
    ``subset=True`` always returns that subset; ``subset=False`` never does."""
    if subset:
        return load_bundled_subset()
    if path is None and not os.environ.get("CNNBP_DATA") and subset is None:
        try:
            return _load("fashion-mnist", None, [os.path.join(os.sep, "usr", "share", "datasets", "fashion-mnist")],
                         _FASHION_HOW)
        except FileNotFoundError:
            if "fashion" not in _told:
                _told.add("fashion")
                print("cnnbp: the full Fashion-MNIST set was not found; using the 7,000-image subset bundled "
                      f"with cnnbp. {_FASHION_HOW}", file=sys.stderr)
            return load_bundled_subset()
    return _load("fashion-mnist", path, [os.path.join(os.sep, "usr", "share", "datasets", "fashion-mnist")],
                 _FASHION_HOW)


def load_bundled_subset():
    """The class-balanced Fashion-MNIST subset shipped in the package: ((6000 x 28 x 28, 6000),
    (1000 x 28 x 28, 1000)) uint8, the first 600 (100) images of each class of the training (test)
    set in their original order. Fashion-MNIST is (c) 2017 Zalando SE, MIT licence
    (cnnbp/data/LICENSE-fashion-mnist.txt)."""
    return load_npz(_BUNDLED)


def load_npz(path):
    """((x_train, y_train), (x_test, y_test)) from an .npz file with those four arrays (no pickles)."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
            if missing:
                raise ValueError(f"load_npz: {path} lacks {missing}; expected x_train, y_train, x_test, y_test")
            parts = [np.array(z[k]) for k in ("x_train", "y_train", "x_test", "y_test")]
    except FileNotFoundError:
        raise FileNotFoundError(f"load_npz: no such file: {path}") from None
    except (OSError, zipfile_error()) as e:
        raise ValueError(f"load_npz: cannot read {path}: {e}") from None
    if len(parts[0]) != len(parts[1]) or len(parts[2]) != len(parts[3]):
        raise ValueError(f"load_npz: {path}: image and label counts differ")
    return (parts[0], parts[1]), (parts[2], parts[3])


def zipfile_error():
    import zipfile
    return zipfile.BadZipFile


def _write_bundled_subset(out_path, path=None, per_class_train=600, per_class_test=100):
    """Make the bundled subset from the full set (how cnnbp/data/fashion_mnist_subset.npz was made)."""
    (xtr, ytr), (xte, yte) = _load("fashion-mnist", path, [os.path.join(os.sep, "usr", "share", "datasets",
                                                                        "fashion-mnist")], _FASHION_HOW)

    def pick(y, k):
        return np.sort(np.concatenate([np.flatnonzero(y == c)[:k] for c in range(10)]))

    a, b = pick(ytr, per_class_train), pick(yte, per_class_test)
    np.savez_compressed(out_path, x_train=xtr[a], y_train=ytr[a], x_test=xte[b], y_test=yte[b])


def load_mnist(path=None):
    """MNIST digits from the same IDX layout (``path``, ``$CNNBP_DATA/mnist``, or Debian's location)."""
    return _load("mnist", path, [os.path.join(os.sep, "usr", "share", "datasets", "mnist")],
                 "Download the four IDX files of MNIST and pass path= or set CNNBP_DATA.")


_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def load_image_folder(path, image_size=None, color_mode="grayscale"):
    """Images sorted into one sub-folder per class (``path/<class>/*.png``) -> (x, y, class_names):
    x uint8 (N, H, W, C), y int64 labels in sorted class order. Needs Pillow. Every image is
    resized to ``image_size`` (H, W), default the first image's size; ``color_mode`` is
    'grayscale' (C = 1) or 'rgb' (C = 3)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("load_image_folder needs Pillow: pip install pillow") from None
    if color_mode not in ("grayscale", "rgb"):
        raise ValueError(f"load_image_folder: color_mode must be 'grayscale' or 'rgb', got {color_mode!r}")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"load_image_folder: no such folder: {path}")
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise ValueError(f"load_image_folder: {path} has no class sub-folders (expected {path}/<class>/*.png)")
    images, labels = [], []
    size = None if image_size is None else (int(image_size[1]), int(image_size[0]))
    for label, cls in enumerate(classes):
        folder = os.path.join(path, cls)
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith(_IMAGE_EXT):
                continue
            f = os.path.join(folder, name)
            try:
                with Image.open(f) as img:
                    img = img.convert("L" if color_mode == "grayscale" else "RGB")
                    if size is None:
                        size = img.size
                    if img.size != size:
                        img = img.resize(size)
                    a = np.asarray(img, dtype=np.uint8)
            except (OSError, ValueError) as e:
                raise ValueError(f"load_image_folder: cannot read {f}: {e}") from None
            images.append(a[..., None] if a.ndim == 2 else a)
            labels.append(label)
    if not images:
        raise ValueError(f"load_image_folder: no images ({', '.join(_IMAGE_EXT)}) under {path}")
    return np.stack(images), np.array(labels, dtype=np.int64), classes


class _KerasLoader:
    """Keras's spelling, ``cnnbp.datasets.fashion_mnist.load_data()``: a namespace with load_data."""

    def __init__(self, fn, name):
        self._fn = fn
        self.__name__ = name

    def load_data(self, path=None):
        """((x_train, y_train), (x_test, y_test)), uint8, images (N, 28, 28): see the loader's docs."""
        return self._fn(path)

    def __repr__(self):
        return f"<cnnbp.datasets.{self.__name__}>"


fashion_mnist = _KerasLoader(load_fashion_mnist, "fashion_mnist")
mnist = _KerasLoader(load_mnist, "mnist")
