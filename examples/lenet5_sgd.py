"""LeNet-5 (ReLU) on Fashion-MNIST with SGD momentum, Sequential style, stopping early when the
validation loss stops improving.

    python examples/lenet5_sgd.py [--epochs 10]
"""

import argparse

import cnnbp
from cnnbp import layers as L


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    (x_train, y_train), (x_test, y_test) = cnnbp.datasets.load_fashion_mnist()
    x_train = (x_train / 255.0).astype("float32")[..., None]
    x_test = (x_test / 255.0).astype("float32")[..., None]

    cnnbp.set_seed(0)
    model = cnnbp.Sequential([
        L.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(120, activation="relu"), L.Dropout(0.2),
        L.Dense(84, activation="relu"),
        L.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=cnnbp.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    stop = cnnbp.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, validation_split=0.1, callbacks=[stop])
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy: {acc:.4f}  (loss {loss:.4f})")


if __name__ == "__main__":
    main()
