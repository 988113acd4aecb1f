"""Winograd's rounding error on the reference models' 3x3 layers: each conv2d pass in float32 with
the direct algorithm, F(2x2,3x3) and F(4x4,3x3), against the float64 result, as the largest
element error relative to the largest element of the result (random normal inputs, He-scaled
weights). Not a test: tests/test_winograd.py bounds the errors; this prints the table that
docs/performance.md quotes.

    python bench/winograd_accuracy.py [--batch 8] [--isa avx512]
"""
import argparse

import numpy as np

import cnnbp
from cnnbp import ops

# (model, layer, H, W, C, K): the stride-1 3x3 layers of vgg (32x32x3 input) and resnet20.
LAYERS = [
    ("vgg", "block1 conv b", 32, 32, 32, 32),
    ("vgg", "block2 conv a", 16, 16, 32, 64),
    ("vgg", "block2 conv b", 16, 16, 64, 64),
    ("vgg", "block3 conv a", 8, 8, 64, 128),
    ("vgg", "block3 conv b", 8, 8, 128, 128),
    ("resnet20", "stage1", 32, 32, 16, 16),
    ("resnet20", "stage2", 16, 16, 32, 32),
    ("resnet20", "stage3", 8, 8, 64, 64),
]
ALGOS = ("direct", "winograd2", "winograd4")


def err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--isa", default=None)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"cnnbp {cnnbp.__version__}, path {a.isa or cnnbp.cpu_capability()}, batch {a.batch}: "
          "max |float32 - float64| / max |float64| per pass")
    print("| model | layer | shape | pass | " + " | ".join(ALGOS) + " |")
    print("|---|---|---|---|" + "---|" * len(ALGOS))
    worst = {k: 0.0 for k in ALGOS}
    for model, name, H, W, C, K in LAYERS:
        x = rng.standard_normal((a.batch, H, W, C))
        w = rng.standard_normal((3, 3, C, K)) * np.sqrt(2.0 / (9 * C))
        dy = rng.standard_normal((a.batch, H, W, K))
        y64 = ops.conv2d(x, w, padding="same")
        dx64 = ops.conv2d_backward_data(dy, w, (H, W), padding="same")
        dw64 = ops.conv2d_backward_weight(dy, x, (3, 3), padding="same")
        x32, w32, dy32 = (v.astype(np.float32) for v in (x, w, dy))
        rows = {"forward": [], "backward data": [], "backward weight": []}
        for algo in ALGOS:
            e = (err(ops.conv2d(x32, w32, padding="same", isa=a.isa, algo=algo), y64),
                 err(ops.conv2d_backward_data(dy32, w32, (H, W), padding="same", isa=a.isa, algo=algo), dx64),
                 err(ops.conv2d_backward_weight(dy32, x32, (3, 3), padding="same", isa=a.isa, algo=algo), dw64))
            for key, v in zip(rows, e):
                rows[key].append(v)
                worst[algo] = max(worst[algo], v)
        for key, vals in rows.items():
            print(f"| {model} | {name} | {H}x{W}x{C}->{K} | {key} | " + " | ".join(f"{v:.1e}" for v in vals) + " |")
    print("worst: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
