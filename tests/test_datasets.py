"""IDX reading and the dataset loaders (files made by the tests)."""

import gzip
import struct

import numpy as np
import pytest

import cnnbp
from cnnbp.datasets import load_fashion_mnist, load_idx


def write_idx(path, arr, compress=False):
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)


def make_dataset(d, n_train=20, n_test=10, compress=True):
    rng = np.random.default_rng(0)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, arr in parts.items():
        write_idx(d / (name + (".gz" if compress else "")), arr, compress)
    return parts


@pytest.mark.parametrize("compress", [True, False])
def test_load_idx_round_trip(tmp_path, compress):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(p, arr, compress)
    out = load_idx(p)
    assert out.dtype == np.uint8 and np.array_equal(out, arr)


def test_load_idx_rejects_truncated_and_foreign_files(tmp_path):
    arr = np.zeros((5, 4), np.uint8)
    p = tmp_path / "t.idx"
    write_idx(p, arr)
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_idx(p)
    q = tmp_path / "f.idx"
    q.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        load_idx(q)
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "missing.idx")


@pytest.mark.parametrize("compress", [True, False])
def test_load_fashion_mnist_from_path_like_keras(tmp_path, compress):
    parts = make_dataset(tmp_path, compress=compress)
    (xtr, ytr), (xte, yte) = load_fashion_mnist(path=tmp_path)
    assert xtr.shape == (20, 28, 28) and xtr.dtype == np.uint8 and ytr.shape == (20,)
    assert np.array_equal(xte, parts["t10k-images-idx3-ubyte"])
    assert np.array_equal(yte, parts["t10k-labels-idx1-ubyte"])


def test_load_fashion_mnist_from_environment(tmp_path, monkeypatch):
    (tmp_path / "fashion-mnist").mkdir()
    make_dataset(tmp_path / "fashion-mnist")
    monkeypatch.setenv("CNNBP_DATA", str(tmp_path))
    (xtr, _), _ = load_fashion_mnist()
    assert len(xtr) == 20


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(path=tmp_path)
    with pytest.raises(FileNotFoundError, match="MNIST"):
        cnnbp.datasets.load_mnist(path=tmp_path)


def test_to_categorical():
    y = cnnbp.utils.to_categorical([0, 2, 1], 3)
    assert y.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]] and y.dtype == np.float32
    with pytest.raises(ValueError, match="out of range"):
        cnnbp.utils.to_categorical([3], 3)


def test_bundled_subset_is_the_fallback_and_says_so_once(monkeypatch, capsys):
    import cnnbp.datasets as d

    def missing(*a, **k):
        raise FileNotFoundError("not installed")

    monkeypatch.setattr(d, "_load", missing)
    monkeypatch.delenv("CNNBP_DATA", raising=False)
    monkeypatch.setattr(d, "_told", set())
    (xtr, ytr), (xte, yte) = d.load_fashion_mnist()
    assert xtr.shape == (6000, 28, 28) and xte.shape == (1000, 28, 28) and xtr.dtype == np.uint8
    assert np.bincount(ytr).tolist() == [600] * 10 and np.bincount(yte).tolist() == [100] * 10
    d.load_fashion_mnist()
    err = capsys.readouterr().err
    assert err.count("bundled") == 1 and "apt-get install dataset-fashion-mnist" in err
    with pytest.raises(FileNotFoundError):
        d.load_fashion_mnist(subset=False)


def test_load_image_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls, n in (("cat", 2), ("dog", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    x, y, classes = cnnbp.datasets.load_image_folder(tmp_path)
    assert x.shape == (5, 6, 5, 1) and x.dtype == np.uint8 and y.tolist() == [0, 0, 1, 1, 1]
    assert classes == ["cat", "dog"]
    x3, _, _ = cnnbp.datasets.load_image_folder(tmp_path, image_size=(8, 8), color_mode="rgb")
    assert x3.shape == (5, 8, 8, 3)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="cannot read"):
        cnnbp.datasets.load_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        cnnbp.datasets.load_image_folder(tmp_path / "none")


def test_keras_loader_spellings(tmp_path, monkeypatch):
    (a, b), (c, d) = cnnbp.datasets.fashion_mnist.load_data()
    assert a.shape[1:] == (28, 28) and a.dtype == np.uint8 and len(a) == len(b) and len(c) == len(d)
    with pytest.raises(FileNotFoundError, match="mnist"):
        cnnbp.datasets.mnist.load_data(path=tmp_path)
