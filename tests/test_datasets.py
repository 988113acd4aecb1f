"""IDX reading and the dataset loaders (files made by the tests)."""

import gzip
import struct

import numpy as np
import pytest

import cnnbp
from cnnbp.datasets import load_fashion_mnist, load_idx
from conftest import make_cifar_archive


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


@pytest.mark.parametrize("extract", [False, True], ids=["archive", "folder"])
def test_cifar10_and_cifar100_like_keras(tmp_path, extract, monkeypatch):
    where, expect = make_cifar_archive(tmp_path, "cifar10", extract=extract)
    (xtr, ytr), (xte, yte) = cnnbp.datasets.load_cifar10(where)
    assert xtr.shape == (30, 32, 32, 3) and xtr.dtype == np.uint8 and ytr.shape == (30, 1) and ytr.dtype == np.uint8
    assert np.array_equal(xtr[6:12], expect["data_batch_2"][0]) and np.array_equal(xte, expect["test_batch"][0])
    assert ytr[:6, 0].tolist() == expect["data_batch_1"][1][b"labels"]
    monkeypatch.setenv("CNNBP_DATA", str(tmp_path))          # found through CNNBP_DATA, and Keras's spelling
    (x2, _), _ = cnnbp.datasets.cifar10.load_data()
    assert np.array_equal(x2, xtr)
    sub = tmp_path / "c100"
    sub.mkdir()
    where, expect = make_cifar_archive(sub, "cifar100", extract=extract)
    for mode, key in (("fine", b"fine_labels"), ("coarse", b"coarse_labels")):
        (xtr, ytr), (xte, yte) = cnnbp.datasets.load_cifar100(where, label_mode=mode)
        assert np.array_equal(xtr, expect["train"][0]) and yte[:, 0].tolist() == expect["test"][1][key]
    assert np.array_equal(cnnbp.datasets.cifar100.load_data("coarse", path=where)[0][1], ytr)


def test_bad_cifar_archives(tmp_path, monkeypatch):
    import pickle
    import tarfile
    monkeypatch.setenv("CNNBP_NO_DOWNLOAD", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNBP_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        cnnbp.datasets.load_cifar10()
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(ValueError, match="cannot read the archive"):
        cnnbp.datasets.load_cifar10(tmp_path / "broken.tar.gz")
    where, _ = make_cifar_archive(tmp_path, "cifar10", extract=True)
    (where / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError):
        cnnbp.datasets.load_cifar10(where)

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo owned",))
    (where / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(ValueError, match="refusing global"):
        cnnbp.datasets.load_cifar10(where)
    (where / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
                                                     protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3 holds data of shape \(2, 100\)"):
        cnnbp.datasets.load_cifar10(where)
    with pytest.raises(ValueError, match="label_mode"):
        cnnbp.datasets.load_cifar100(where, label_mode="medium")
    partial = tmp_path / "partial.tar.gz"
    with tarfile.open(partial, "w:gz") as t:
        t.add(where / "test_batch", arcname="cifar-10-batches-py/test_batch")
    with pytest.raises(ValueError, match="lacks cifar-10-batches-py/data_batch_1"):
        cnnbp.datasets.load_cifar10(partial)


def test_image_folder_streams_batch_by_batch(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c, cls in enumerate(["cat", "dog"]):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (6, 8), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    x, y, names = cnnbp.datasets.load_image_folder(tmp_path)
    seq = cnnbp.datasets.load_image_folder(tmp_path, stream=True, batch_size=4, shuffle=False)
    assert isinstance(seq, cnnbp.utils.Sequence) and len(seq) == 3 and seq.class_names == names
    xs = np.concatenate([seq[i][0] for i in range(3)])
    assert np.array_equal(xs, x) and np.array_equal(np.concatenate([seq[i][1] for i in range(3)]), y)
    shuffled = cnnbp.datasets.load_image_folder(tmp_path, stream=True, batch_size=4, seed=3)
    first = np.concatenate([shuffled[i][1] for i in range(3)])
    shuffled.on_epoch_end()
    second = np.concatenate([shuffled[i][1] for i in range(3)])
    assert sorted(first) == sorted(y) and not np.array_equal(first, second)     # a new order per epoch
    cnnbp.set_seed(0)
    m = cnnbp.Sequential([cnnbp.Input((6, 8, 1)), cnnbp.layers.Rescaling(1 / 255), cnnbp.layers.Flatten(),
                          cnnbp.layers.Dense(2, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    h = m.fit(shuffled, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2
    with pytest.raises(IndexError):
        seq[3]
