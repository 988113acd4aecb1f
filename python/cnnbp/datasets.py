"""Datasets: Fashion-MNIST and MNIST from IDX files (as Debian's dataset-fashion-mnist installs
them), returned like Keras's loaders: ((x_train, y_train), (x_test, y_test)) as uint8 arrays,
images (N, 28, 28); CIFAR-10 and CIFAR-100 from their "python version" archives; image folders."""

import gzip
import os
import struct
import sys

import numpy as np

from .utils import Sequence

__all__ = ["load_idx", "load_fashion_mnist", "load_mnist", "load_npz", "load_image_folder", "load_cifar10",
           "load_cifar100", "ImageFolderSequence", "FASHION_MNIST_CLASSES", "CIFAR10_CLASSES", "fashion_mnist", "mnist",
           "cifar10", "cifar100"]

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


def load_image_folder(path, image_size=None, color_mode="grayscale", stream=False, batch_size=32, shuffle=True,
                      seed=0):
    """Images sorted into one sub-folder per class (``path/<class>/*.png``) -> (x, y, class_names):
    x uint8 (N, H, W, C), y int64 labels in sorted class order. Needs Pillow. Every image is
    resized to ``image_size`` (H, W), default the first image's size; ``color_mode`` is
    'grayscale' (C = 1) or 'rgb' (C = 3).

    ``stream=True`` lists the files only and returns an ``ImageFolderSequence`` (decoding each
    batch of ``batch_size`` images when it is asked for, in a new order each epoch with
    ``shuffle``): ``fit(seq)`` trains on folders larger than memory."""
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
    if stream:
        files = []
        for label, cls in enumerate(classes):
            folder = os.path.join(path, cls)
            for name in sorted(os.listdir(folder)):
                if name.lower().endswith(_IMAGE_EXT):
                    files.append(os.path.join(folder, name))
                    labels.append(label)
        if not files:
            raise ValueError(f"load_image_folder: no images ({', '.join(_IMAGE_EXT)}) under {path}")
        if size is None:
            first = _read_image(files[0], None, color_mode)
            size = (first.shape[1], first.shape[0])
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"load_image_folder: batch_size must be a positive int, got {batch_size!r}")
        return ImageFolderSequence(files, labels, classes, size, color_mode, batch_size, shuffle, seed)
    for label, cls in enumerate(classes):
        folder = os.path.join(path, cls)
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith(_IMAGE_EXT):
                continue
            a = _read_image(os.path.join(folder, name), size, color_mode)
            if size is None:
                size = (a.shape[1], a.shape[0])
            images.append(a)
            labels.append(label)
    if not images:
        raise ValueError(f"load_image_folder: no images ({', '.join(_IMAGE_EXT)}) under {path}")
    return np.stack(images), np.array(labels, dtype=np.int64), classes


class ImageFolderSequence(Sequence):
    """An image folder read batch by batch (``load_image_folder(path, stream=True)``): a
    ``cnnbp.utils.Sequence`` of ``(x uint8 (B, H, W, C), y int64 (B,))`` batches that decodes only
    the images of the batch asked for, so a folder larger than memory trains with
    ``fit(seq, epochs=...)``. With ``shuffle`` the order is a new permutation each epoch, a pure
    function of (seed, epoch)."""

    def __init__(self, files, labels, classes, image_size, color_mode, batch_size, shuffle, seed):
        super().__init__()
        self.files, self.labels, self.class_names = files, np.asarray(labels, dtype=np.int64), classes
        self.image_size, self.color_mode = image_size, color_mode
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), seed
        self.epoch = 0
        self._order()

    def _order(self):
        n = len(self.files)
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)

    def __len__(self):
        return -(-len(self.files) // self.batch_size)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"ImageFolderSequence: batch {i} out of range ({len(self)} batches)")
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        x = np.stack([_read_image(self.files[j], self.image_size, self.color_mode) for j in idx])
        return x, self.labels[idx]

    def on_epoch_end(self):
        self.epoch += 1
        self._order()


def _read_image(f, size, color_mode):
    from PIL import Image
    try:
        with Image.open(f) as img:
            img = img.convert("L" if color_mode == "grayscale" else "RGB")
            if size is not None and img.size != size:
                img = img.resize(size)
            a = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise ValueError(f"load_image_folder: cannot read {f}: {e}") from None
    return a[..., None] if a.ndim == 2 else a


# ---- CIFAR ------------------------------------------------------------------------------------
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_CIFAR = {   # archive, its folder, md5 of the archive (as published with it), train files, test file
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py", "c58f30108f718f92721af3b95e74349a",
                [f"data_batch_{i}" for i in range(1, 6)], "test_batch"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", "eb9058c3a382ffc7106e4002c42a8d85", ["train"], "test"),
}
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"


class _ArraysOnly:
    """Unpickles CIFAR's batch files, which hold dicts of bytes, lists and numpy arrays, and
    nothing else: any other global (a function a crafted file could call) is refused."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"),
                ("_codecs", "encode")}   # how Python 3 pickles bytes under protocol 2 (a pure data transform)

    @classmethod
    def loads(cls, data, where):
        import io
        import pickle

        class U(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) not in cls._ALLOWED:
                    raise pickle.UnpicklingError(f"refusing global {module}.{name}")
                return super().find_class(module, name)
        try:
            return U(io.BytesIO(data), encoding="bytes").load()
        except Exception as e:
            raise ValueError(f"{where}: not a CIFAR batch file ({type(e).__name__}: {e})") from None


def _cifar_files(kind, path):
    """{member name: bytes} of the archive or folder for `kind`, searched as load_cifar10 says."""
    import tarfile
    archive, folder, md5, train, test = _CIFAR[kind]
    want = train + [test]
    candidates = []
    if path is not None:
        candidates.append(os.fspath(path))
    else:
        if os.environ.get("CNNBP_DATA"):
            candidates.append(os.environ["CNNBP_DATA"])
        candidates.append(_cache_dir())
    for c in candidates:
        for p in (c, os.path.join(c, folder), os.path.join(c, archive)):
            if os.path.isdir(p) and all(os.path.isfile(os.path.join(p, f)) for f in want):
                out = {}
                for f in want:
                    with open(os.path.join(p, f), "rb") as fh:
                        out[f] = fh.read()
                return out
            if os.path.isfile(p) and (p.endswith((".tar.gz", ".tgz", ".tar"))):
                try:
                    with tarfile.open(p) as tar:
                        out = {}
                        for m in tar.getmembers():
                            base = m.name.rsplit("/", 1)[-1]
                            if m.isfile() and base in want and m.name.startswith(folder + "/"):
                                out[base] = tar.extractfile(m).read()
                except (tarfile.TarError, OSError, EOFError) as e:
                    raise ValueError(f"{kind}: cannot read the archive {p}: {e}") from None
                missing = [f for f in want if f not in out]
                if missing:
                    raise ValueError(f"{kind}: the archive {p} lacks {folder}/{', '.join(missing)}")
                return out
    if path is None and os.environ.get("CNNBP_NO_DOWNLOAD") is None:
        target = os.path.join(_cache_dir(), archive)
        _download(_CIFAR_URL + archive, target, md5, kind)
        return _cifar_files(kind, target)
    raise FileNotFoundError(f"{kind}: no {archive} or {folder}/ in {', '.join(candidates)}; download {_CIFAR_URL}"
                            f"{archive} and pass path=, or set CNNBP_DATA")


def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cnnbp")


def _download(url, target, md5, kind):
    """url into target through a temporary file, kept only when its md5 matches."""
    import hashlib
    import urllib.request
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = target + f".part{os.getpid()}"
    print(f"cnnbp: downloading {url} ...", file=sys.stderr)
    try:
        h = hashlib.md5()
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != md5:
            raise ValueError(f"{kind}: the download of {url} has md5 {h.hexdigest()}, expected {md5}")
        os.replace(tmp, target)
    except OSError as e:
        raise FileNotFoundError(f"{kind}: not found locally and the download of {url} failed ({e}); download it "
                                "yourself and pass path=, or set CNNBP_DATA") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _cifar_batch(kind, name, data, label_key):
    d = _ArraysOnly.loads(data, f"{kind}: {name}")
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        raise ValueError(f"{kind}: {name} is not a CIFAR batch (no {label_key.decode()} / data)")
    x = np.asarray(d[b"data"])
    y = np.asarray(d[label_key])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
        raise ValueError(f"{kind}: {name} holds data of shape {x.shape} ({x.dtype}) and {y.shape} labels; expected "
                         "(N, 3072) uint8 and (N,)")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.uint8)


def _load_cifar(kind, path, label_key):
    _, _, _, train, test = _CIFAR[kind]
    files = _cifar_files(kind, path)
    parts = [_cifar_batch(kind, f, files[f], label_key) for f in train]
    xtr = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    ytr = np.concatenate([p[1] for p in parts])[:, None]
    xte, yte = _cifar_batch(kind, test, files[test], label_key)
    return (xtr, ytr), (np.ascontiguousarray(xte), yte[:, None])


def load_cifar10(path=None):
    """CIFAR-10 as Keras returns it: ((x_train (50000, 32, 32, 3) uint8, y_train (50000, 1) uint8),
    (x_test (10000, 32, 32, 3), y_test (10000, 1))). Reads the official "python version" archive
    (``cifar-10-python.tar.gz``) or its extracted folder (``cifar-10-batches-py``): ``path`` (either,
    or the folder holding either), else ``$CNNBP_DATA``, else the cache ``~/.cache/cnnbp``, into
    which it is downloaded (md5 checked) when found nowhere (``CNNBP_NO_DOWNLOAD=1`` forbids it).
    The batch files are pickles: they are read with an unpickler that accepts numpy arrays and
    plain data only."""
    return _load_cifar("cifar10", path, b"labels")


def load_cifar100(path=None, label_mode="fine"):
    """CIFAR-100 as Keras returns it (``label_mode`` 'fine': 100 classes, 'coarse': 20), from
    ``cifar-100-python.tar.gz`` or its folder ``cifar-100-python``, found as load_cifar10 finds
    CIFAR-10's."""
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"load_cifar100: label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    return _load_cifar("cifar100", path, b"fine_labels" if label_mode == "fine" else b"coarse_labels")


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
cifar10 = _KerasLoader(load_cifar10, "cifar10")


class _Cifar100Loader(_KerasLoader):
    def load_data(self, label_mode="fine", path=None):
        """((x_train, y_train), (x_test, y_test)) of CIFAR-100: see load_cifar100."""
        return load_cifar100(path, label_mode)


cifar100 = _Cifar100Loader(load_cifar100, "cifar100")
