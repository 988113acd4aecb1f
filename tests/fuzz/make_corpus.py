"""Writes the fuzz harnesses' seed corpora (small files, made fresh each run, in the current file
format); tests/fuzz/corpus/{load,models} holds a committed copy (models: the build harness's) that .ci/fuzz reads as extra seeds
(regenerate it with this script when the format changes):

    python tests/fuzz/make_corpus.py DIR      # DIR/load and DIR/build
"""

import os
import sys

import numpy as np

import cnnbp
from cnnbp import layers as L


def models():
    cnnbp.set_seed(1)
    seq = cnnbp.Sequential([L.Input((6, 6, 1)), L.Conv2D(2, 3), L.Flatten(), L.Dense(3)])
    x = L.Input((5, 5, 2))
    a = L.ReLU()(L.BatchNormalization()(L.Conv2D(3, 3, padding="same", use_bias=False)(x)))
    b = L.Conv2D(3, 1)(x)
    y = L.Concatenate()([L.Add()([a, b]), L.ZeroPadding2D(((0, 0), (0, 0)))(a)])
    y = L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(L.MaxPooling2D(padding="same")(y)))
    graph = cnnbp.Model(x, y)
    graph.compile(optimizer="adam", loss="categorical_crossentropy")
    return seq, graph


def main(out):
    load, build = os.path.join(out, "load"), os.path.join(out, "build")
    os.makedirs(load, exist_ok=True)
    os.makedirs(build, exist_ok=True)
    seq, graph = models()
    files = []
    for i, m in enumerate((seq, graph)):
        p = os.path.join(out, f"m{i}.cnnbp")
        m.save(p)
        files.append(open(p, "rb").read())
    w = os.path.join(out, "w.cnnbp")
    seq.save_weights(w)
    files.append(open(w, "rb").read())
    for i, data in enumerate(files):
        # the harness's input: a mode byte, then (structured mode) 64 bytes of mutation choices
        with open(os.path.join(load, f"raw{i}"), "wb") as f:
            f.write(b"\x00" + data)
        with open(os.path.join(load, f"structured{i}"), "wb") as f:
            f.write(b"\x01" + bytes(64) + data)
    with open(os.path.join(load, "weights"), "wb") as f:
        f.write(b"\x02" + files[-1])
    for i, blob in enumerate((bytes(64), bytes(range(64)), np.arange(64, dtype=np.uint8)[::-1].tobytes())):
        with open(os.path.join(build, f"seed{i}"), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main(sys.argv[1])
