import os

import numpy as np
import pytest

import cnnbp
from cnnbp import _core


def available_isas():
    order = ["baseline", "neon"] if _core.detected_capability() == "neon" else ["baseline", "avx2", "avx512"]
    best = order.index(_core.detected_capability())
    paths = [i for i in order[: best + 1] if i in _core.compiled_capabilities()]
    if "avx2" in paths and "avx512" not in paths:
        paths.append("avx2-wide")  # the AVX-512 kernels' 16-float tiling, run on AVX2
    return paths


ISAS = available_isas()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = cnnbp.get_num_threads()
    cnnbp.set_num_threads(request.param)
    yield request.param
    cnnbp.set_num_threads(old)


@pytest.fixture(autouse=True)
def _restore_threads():
    old = cnnbp.get_num_threads()
    yield
    cnnbp.set_num_threads(old)


def compiled_resnet(depth, input_shape, classes, seed=None):
    """cnnbp.applications.resnet compiled for training with SGD (0.05, momentum 0.9), its weights
    drawn from `seed` when given."""
    if seed is not None:
        cnnbp.set_seed(seed)
    m = cnnbp.applications.resnet(depth, input_shape, classes)
    m.compile(optimizer=cnnbp.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy")
    return m


def fashion_mnist_or_skip():
    try:
        return cnnbp.datasets.load_fashion_mnist()
    except FileNotFoundError as e:
        if os.environ.get("CNNBP_REQUIRE_DATA"):
            raise
        pytest.skip(str(e))


def make_cifar_archive(tmp_path, kind, n=6, seed=0, extract=False):
    """A small archive in the official "python version" layout (pickled dicts of a uint8 (N, 3072)
    array in channel-planar order and a label list), and the images/labels it should give."""
    import pickle
    import tarfile
    rng = np.random.default_rng(seed)
    folder, files, keys = (("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
                            [b"labels"]) if kind == "cifar10" else
                           ("cifar-100-python", ["train", "test"], [b"fine_labels", b"coarse_labels"]))
    root = tmp_path / folder
    root.mkdir()
    expect = {}
    for f in files:
        img = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = {k: rng.integers(0, 100 if k == b"fine_labels" else 10, n).tolist() for k in keys}
        d = {b"data": img.transpose(0, 3, 1, 2).reshape(n, 3072), b"batch_label": b"x", **labels}
        (root / f).write_bytes(pickle.dumps(d, protocol=2))
        expect[f] = (img, labels)
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"]}, protocol=2))
    if extract:
        return root, expect
    archive = tmp_path / ("cifar-10-python.tar.gz" if kind == "cifar10" else "cifar-100-python.tar.gz")
    with tarfile.open(archive, "w:gz") as t:
        t.add(root, arcname=folder)
    return archive, expect
