"""A 1-D convolutional classifier on a synthetic signal task: which of three waveforms (sine,
square, sawtooth), at a random frequency and phase under noise, is a 128-sample signal? Conv1D,
MaxPooling1D and GlobalAveragePooling1D, as in the Keras time-series examples.

    python examples/signal_conv1d.py [--epochs 10] [--samples N]
"""

import argparse

import numpy as np

import cnnbp
from cnnbp import layers

CLASSES = ["sine", "square", "sawtooth"]


def make_signals(n, rng, length=128):
    t = np.arange(length) / length
    y = rng.integers(0, 3, n)
    freq = rng.uniform(2, 8, (n, 1))
    phase = rng.uniform(0, 1, (n, 1))
    u = (freq * t + phase) % 1.0
    waves = np.stack([np.sin(2 * np.pi * u), np.where(u < 0.5, 1.0, -1.0), 2 * u - 1])
    x = waves[y, np.arange(n)] + rng.normal(0, 0.4, (n, length))
    return x[..., None].astype("float32"), y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--samples", type=int, default=6000, help="training signals")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x_train, y_train = make_signals(args.samples, rng)
    x_test, y_test = make_signals(1000, rng)

    cnnbp.set_seed(0)
    model = cnnbp.Sequential([
        cnnbp.Input((128, 1)),
        layers.Conv1D(16, 7, padding="same", activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(32, 5, padding="same", activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(32, 3, padding="causal", activation="relu"),
        layers.GlobalAveragePooling1D(),
        layers.Dense(3, activation="softmax"),
    ])
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, validation_split=0.1, verbose=2)
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy: {acc:.4f} (loss {loss:.4f})")


if __name__ == "__main__":
    main()
