"""What the input pipeline and augmentation cost: one epoch of the seed model over the full
Fashion-MNIST training set (60,000 images), in alternating rounds (each round times every variant
once), medians and ratios against the bare step loop.

    bare loop        net.train_step over batches gathered beforehand (the step alone)
    float32          fit(x_float32), the default (the gathers in a thread when a core is free)
    float32 thread   the gathers always in the prefetch thread
    float32 serial   the gathers always in line
    uint8            fit(x_uint8) with Rescaling(1/255) first in the model
    uint8 mmap       the same from a memory-mapped .npy
    uint8 + aug      uint8 with RandomFlip("horizontal") + RandomCrop(28, 28, padding=2)
    aug bare loop    the augmenting model's bare step loop

    python bench/bench_pipeline.py [--threads 2] [--rounds 5] [--batch 128]
"""

import argparse
import os
import tempfile
import time

import numpy as np

import cnnbp
from cnnbp import _data, layers as L


def build(aug, rescale):
    cnnbp.set_seed(0)
    pre = [L.Rescaling(1 / 255)] if rescale else []
    if aug:
        pre += [L.RandomFlip("horizontal"), L.RandomCrop(28, 28, padding=2)]
    m = cnnbp.Sequential([L.Input((28, 28, 1))] + pre + [L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                                                          L.Flatten(), L.Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    cnnbp.set_num_threads(a.threads)
    (x8, y), _ = cnnbp.datasets.load_fashion_mnist(subset=False)
    x8 = x8[..., None]
    xf = x8.astype(np.float32) / 255
    tmp = tempfile.mkdtemp()
    np.save(os.path.join(tmp, "x.npy"), x8)
    xm = np.load(os.path.join(tmp, "x.npy"), mmap_mode="r")
    bs, n = a.batch, len(x8)
    order = np.random.default_rng(0).permutation(n)
    pre_f = [np.ascontiguousarray(xf[order[i:i + bs]]) for i in range(0, n, bs)]
    pre_8 = [np.ascontiguousarray(x8[order[i:i + bs]]).astype(np.float32) for i in range(0, n, bs)]
    pre_y = [y[order[i:i + bs]].astype(np.float32) for i in range(0, n, bs)]
    models = {"plain": build(False, False), "rescale": build(False, True), "aug": build(True, True)}

    def bare(m, pre):
        net = m.network
        for xb, yb in zip(pre, pre_y):
            net.train_step(xb, yb)

    def fit(m, x, prefetch=None):
        _data.PREFETCH = prefetch
        try:
            m.fit(x, y, batch_size=bs, epochs=1, verbose=0)
        finally:
            _data.PREFETCH = None

    variants = {
        "bare loop": lambda: bare(models["plain"], pre_f),
        "float32": lambda: fit(models["plain"], xf),
        "float32 thread": lambda: fit(models["plain"], xf, prefetch=True),
        "float32 serial": lambda: fit(models["plain"], xf, prefetch=False),
        "uint8": lambda: fit(models["rescale"], x8),
        "uint8 mmap": lambda: fit(models["rescale"], xm),
        "aug bare loop": lambda: bare(models["aug"], pre_8),
        "uint8 + aug": lambda: fit(models["aug"], x8),
    }
    for m in models.values():   # warm-up: plans, pages
        m.fit(x8[: bs * 20] if m is not models["plain"] else xf[: bs * 20], y[: bs * 20], batch_size=bs, verbose=0)
    times = {k: [] for k in variants}
    for _ in range(a.rounds):
        for name, run in variants.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    base = float(np.median(times["bare loop"]))
    print(f"seed model, Fashion-MNIST {n} images, batch {bs}, {a.threads} threads, {cnnbp.cpu_capability()} kernels, "
          f"median of {a.rounds} rounds")
    for name in variants:
        med = float(np.median(times[name]))
        print(f"  {name:16s} {n / med:9.0f} images/s   epoch {med:6.3f} s   x{med / base:.3f} of the bare loop")


if __name__ == "__main__":
    main()
