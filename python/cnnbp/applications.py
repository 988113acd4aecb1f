"""The reference models (the benchmarks and the command line use them).

- ``seed``: Conv2D(32, 3x3, ReLU) -> MaxPool 2 -> Flatten -> Dense(classes, softmax)
- ``lenet``: LeNet-5 with ReLU: Conv(6, 5x5, pad 2) -> MaxPool -> Conv(16, 5x5) -> MaxPool ->
  Dense 120 -> Dense 84 -> Dense(classes)
- ``vgg``: three blocks of two 3x3 'same' convolutions (32, 64, 128 filters) with 2x2 max pooling,
  then Dense 256 ReLU -> Dense(classes)
"""

from . import layers as L
from .models import Sequential

__all__ = ["seed", "lenet", "vgg", "MODELS"]


def seed(input_shape=(28, 28, 1), classes=10):
    """Conv2D(32, 3x3, ReLU) -> MaxPool 2 -> Flatten -> Dense(classes, softmax)."""
    return Sequential([L.Input(input_shape), L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
                       L.Flatten(), L.Dense(classes, activation="softmax")], name="seed")


def lenet(input_shape=(28, 28, 1), classes=10):
    """LeNet-5 with ReLU: Conv(6, 5x5, pad 2) -> MaxPool -> Conv(16, 5x5) -> MaxPool -> Dense 120 -> 84 -> classes."""
    return Sequential([
        L.Input(input_shape),
        L.Conv2D(6, 5, padding=2, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(classes, activation="softmax"),
    ], name="lenet")


def vgg(input_shape=(32, 32, 3), classes=10):
    """3 x [2 x Conv 3x3 'same' ReLU, MaxPool] with 32/64/128 filters -> Dense 256 -> Dense(classes)."""
    blocks = []
    for f in (32, 64, 128):
        blocks += [L.Conv2D(f, 3, padding="same", activation="relu"), L.Conv2D(f, 3, padding="same", activation="relu"),
                   L.MaxPooling2D(2)]
    return Sequential([L.Input(input_shape)] + blocks + [L.Flatten(), L.Dense(256, activation="relu"),
                                                         L.Dense(classes, activation="softmax")], name="vgg")


MODELS = {"seed": seed, "lenet": lenet, "vgg": vgg}
