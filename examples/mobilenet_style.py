"""A MobileNet-style classifier for Fashion-MNIST: depthwise-separable blocks (DepthwiseConv2D,
BatchNormalization, ReLU6, then a 1x1 Conv2D), global average pooling and a softmax, in the
functional style of the Keras examples.

    python examples/mobilenet_style.py [--epochs 5] [--samples N]
"""

import argparse

import cnnbp
from cnnbp import layers


def bn():
    # momentum 0.9 (Keras's default is 0.99): over a few hundred steps the moving statistics,
    # which predict and evaluate use, then follow the batches instead of their initial values
    return layers.BatchNormalization(momentum=0.9)


def separable_block(x, filters, strides):
    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.ReLU(6.0)(bn()(x))
    x = layers.Conv2D(filters, 1, use_bias=False)(x)
    return layers.ReLU(6.0)(bn()(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--samples", type=int, default=None, help="train on the first N images only")
    args = ap.parse_args()
    (x_train, y_train), (x_test, y_test) = cnnbp.datasets.fashion_mnist.load_data()
    x_train = (x_train[: args.samples] / 255.0).astype("float32")[..., None]
    y_train = y_train[: args.samples]
    x_test = (x_test / 255.0).astype("float32")[..., None]

    cnnbp.set_seed(0)
    inputs = cnnbp.Input(shape=(28, 28, 1))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU(6.0)(bn()(x))
    for filters, strides in ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1)):
        x = separable_block(x, filters, strides)
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    outputs = layers.Dense(10, activation="softmax")(x)
    model = cnnbp.Model(inputs, outputs)
    model.summary()

    model.compile(optimizer=cnnbp.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, validation_split=0.1, verbose=2)
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy: {acc:.4f} (loss {loss:.4f})")


if __name__ == "__main__":
    main()
