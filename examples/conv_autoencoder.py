"""A convolutional autoencoder on Fashion-MNIST, written as the Keras guides write it: strided
Conv2D layers encode a 28x28 image into 7x7x8 numbers, Conv2DTranspose layers decode it, and the
model learns to reproduce its input (binary cross-entropy on pixel intensities).

    python examples/conv_autoencoder.py [--epochs 10] [--samples N]
"""

import argparse

import numpy as np

import cnnbp
from cnnbp import layers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--samples", type=int, default=None, help="train on the first N images only")
    args = ap.parse_args()
    (x_train, _), (x_test, _) = cnnbp.datasets.fashion_mnist.load_data()
    x_train = (x_train[: args.samples] / 255.0).astype("float32")[..., None]
    x_test = (x_test / 255.0).astype("float32")[..., None]

    cnnbp.set_seed(0)
    inputs = cnnbp.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)          # the code: 7x7x8
    x = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    autoencoder = cnnbp.Model(inputs, outputs)
    autoencoder.summary()

    autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
    autoencoder.fit(x_train, x_train, epochs=args.epochs, batch_size=128, shuffle=True,
                    validation_data=(x_test, x_test), verbose=2)

    decoded = autoencoder.predict(x_test, batch_size=256, verbose=0)
    mse = float(np.mean((decoded - x_test) ** 2))
    print(f"reconstruction mse: {mse:.4f} (test set; predicting the mean image gives "
          f"{float(np.mean((x_test - x_train.mean(axis=0)) ** 2)):.4f})")


if __name__ == "__main__":
    main()
