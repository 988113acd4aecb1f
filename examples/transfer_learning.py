"""Transfer learning the Keras way: train a convolutional network on half of Fashion-MNIST's
classes (T-shirt, trouser, pullover, dress, coat) and save it; load it, drop its head, and put
the trained base, frozen, under a new head for the other five (sandal, shirt, sneaker, bag,
ankle boot); train the head; then unfreeze the base and fine-tune with a small learning rate.

    python examples/transfer_learning.py [--epochs 3] [--samples N]
"""

import argparse
import os
import tempfile

import cnnbp
from cnnbp import layers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=None, help="use the first N training images only")
    args = ap.parse_args()
    (x_train, y_train), (x_test, y_test) = cnnbp.datasets.fashion_mnist.load_data()
    x_train = (x_train[: args.samples] / 255.0).astype("float32")[..., None]
    y_train = y_train[: args.samples]
    x_test = (x_test / 255.0).astype("float32")[..., None]
    old, new, new_test = y_train < 5, y_train >= 5, y_test >= 5

    # 1. a network for the first five classes, trained and saved
    cnnbp.set_seed(0)
    pretrained = cnnbp.Sequential([
        cnnbp.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(5, activation="softmax"),
    ], name="pretrained")
    pretrained.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pretrained.fit(x_train[old], y_train[old], epochs=args.epochs, batch_size=64, verbose=2)
    path = os.path.join(tempfile.mkdtemp(), "pretrained.cnnbp")
    pretrained.save(path)

    # 2. its convolutional base, frozen, under a new head for the other five classes
    base = cnnbp.models.load_model(path)
    base.pop()                      # drop the old classifier; the base keeps its trained weights
    base.trainable = False
    inputs = cnnbp.Input((28, 28, 1))
    x = base(inputs, training=False)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(5, activation="softmax")(x)
    model = cnnbp.Model(inputs, outputs)
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train[new], y_train[new] - 5, epochs=args.epochs, batch_size=64, verbose=2)
    _, acc_frozen = model.evaluate(x_test[new_test], y_test[new_test] - 5, verbose=0)
    print(f"head only (base frozen): test accuracy {acc_frozen:.4f}")

    # 3. fine-tune everything, slowly
    base.trainable = True
    model.compile(optimizer=cnnbp.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train[new], y_train[new] - 5, epochs=1, batch_size=64, verbose=2)
    loss, acc = model.evaluate(x_test[new_test], y_test[new_test] - 5, verbose=0)
    print(f"test accuracy: {acc:.4f} (loss {loss:.4f}; classes {', '.join(cnnbp.datasets.FASHION_MNIST_CLASSES[5:])})")


if __name__ == "__main__":
    main()
