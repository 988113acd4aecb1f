"""Peak resident memory of one epoch of the seed model on the full Fashion-MNIST training set,
read from a memory-mapped uint8 .npy (Rescaling(1/255) in the model) or from the float32 copy in
memory, each in a process of its own; against the float32 copy's size.

    python bench/bench_mmap_rss.py
"""

import os
import subprocess
import sys
import tempfile

CHILD = r"""
import resource, sys, numpy as np
import cnnbp
from cnnbp import layers as L
mode, folder = sys.argv[1], sys.argv[2]
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
base = rss()
x = np.load(folder + "/x.npy", mmap_mode="r")
if mode == "float32":
    x = np.asarray(x, dtype=np.float32) / 255
y = np.load(folder + "/y.npy")
cnnbp.set_seed(0)
pre = [L.Rescaling(1 / 255)] if mode == "mmap" else []
m = cnnbp.Sequential([L.Input((28, 28, 1))] + pre + [L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                                                      L.Flatten(), L.Dense(10, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
m.fit(x, y, batch_size=128, epochs=1, verbose=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"  {mode:8s} peak RSS {peak:5.0f} MiB (after import {base:.0f} MiB)")
"""


def main():
    import numpy as np
    import cnnbp
    (x, y), _ = cnnbp.datasets.load_fashion_mnist(subset=False)
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "x.npy"), x[..., None])
        np.save(os.path.join(d, "y.npy"), y)
        print(f"seed model, one epoch of {len(x)} images, batch 128; the float32 copy of x is "
              f"{x.size * 4 / 2**20:.0f} MiB, the uint8 file {x.size / 2**20:.0f} MiB")
        for mode in ("mmap", "float32"):
            subprocess.run([sys.executable, "-c", CHILD, mode, d], check=True)


if __name__ == "__main__":
    main()
