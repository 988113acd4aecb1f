"""Coverage-guided fuzzing of model construction (atheris): a Sequential of 1-4 random layers
(Conv2D, Dense, pooling, padding, cropping, BatchNormalization, Flatten, activations) on a random
input shape, every size drawn from small values and the edges of 32- and 64-bit arithmetic
(common.EDGES); the model is built, counted and summarised, and when it is small, trained for one
step. A clean refusal is an exception from common.CLEAN; a crash or any other exception is a
finding.

    python tests/fuzz/fuzz_build.py tests/fuzz/corpus/build -max_total_time=120   # as CI
"""

import io
import os
import sys
from contextlib import redirect_stdout

import atheris

import numpy as np
import cnnbp
from cnnbp import layers as L

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CLEAN, EDGES, run  # noqa: E402


def size(fdp):
    if fdp.ConsumeBool():
        return EDGES[fdp.ConsumeIntInRange(0, len(EDGES) - 1)]
    return fdp.ConsumeIntInRange(1, 9)


def layer(fdp):
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind == 0:
        return L.Conv2D(size(fdp), (size(fdp), size(fdp)), strides=size(fdp),
                        padding=["valid", "same", size(fdp)][fdp.ConsumeIntInRange(0, 2)])
    if kind == 1:
        return L.Conv2D(size(fdp), size(fdp), dilation_rate=size(fdp), padding="same")
    if kind == 2:
        return L.Dense(size(fdp), activation=["relu", "tanh", None][fdp.ConsumeIntInRange(0, 2)])
    if kind == 3:
        return L.MaxPooling2D(size(fdp), strides=size(fdp), padding=["valid", "same"][fdp.ConsumeIntInRange(0, 1)])
    if kind == 4:
        return L.AveragePooling2D(size(fdp))
    if kind == 5:
        return L.ZeroPadding2D(((size(fdp), size(fdp)), (size(fdp), size(fdp))))
    if kind == 6:
        return L.Cropping2D(((size(fdp), size(fdp)), (size(fdp), size(fdp))))
    if kind == 7:
        return L.BatchNormalization()
    if kind == 8:
        return L.Flatten()
    return L.ReLU()


def cheap(m, shape):
    """Small enough to train a step in milliseconds: a valid model can still ask for hours (a
    65537x65537 pooling window over a 65547-wide padded tensor), which is not a finding."""
    windows = [int(np.prod(getattr(l, a))) for l in m.layers for a in ("pool_size", "kernel_size") if hasattr(l, a)]
    return (int(np.prod(shape)) <= 4096 and m.count_params() <= 100000 and max(windows, default=1) <= 256
            and all(int(np.prod(l.output_shape[1:])) <= 65536 for l in m.layers))


def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    try:
        shape = tuple(size(fdp) for _ in range(fdp.ConsumeIntInRange(1, 3)))
        m = cnnbp.Sequential([L.Input(shape)] + [layer(fdp) for _ in range(fdp.ConsumeIntInRange(1, 4))])
        m.count_params()
        with redirect_stdout(io.StringIO()):
            m.summary()
        if cheap(m, shape):
            m.compile(optimizer="sgd", loss="mse")
            x = np.ones((2,) + shape, np.float32)
            m.fit(x, np.zeros((2,) + m.output_shape[1:], np.float32), epochs=1, verbose=0)
    except CLEAN:
        pass


if __name__ == "__main__":
    run(TestOneInput, gib=2)  # (so that the budget keeps every model quick to build)
