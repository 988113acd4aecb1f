import os

import numpy as np
import pytest

import cnnbp
from cnnbp import _core


def available_isas():
    order = ["baseline", "avx2", "avx512"]
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


def fashion_mnist_or_skip():
    try:
        return cnnbp.datasets.load_fashion_mnist()
    except FileNotFoundError as e:
        if os.environ.get("CNNBP_REQUIRE_DATA"):
            raise
        pytest.skip(str(e))
