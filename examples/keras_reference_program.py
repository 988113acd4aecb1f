"""The reference Keras program with tf.keras replaced by cnnbp, trained on Fashion-MNIST.

    python examples/keras_reference_program.py [--epochs 2]
"""

import argparse

import cnnbp


def cnn_model(input_shape):
    input_layer = cnnbp.layers.Input(shape=input_shape)
    conv_layer = cnnbp.layers.Conv2D(32, (3, 3), activation='relu')(input_layer)
    pool_layer = cnnbp.layers.MaxPooling2D((2, 2))(conv_layer)
    flatten_layer = cnnbp.layers.Flatten()(pool_layer)
    dense_layer = cnnbp.layers.Dense(10, activation='softmax')(flatten_layer)
    return cnnbp.Model(input_layer, dense_layer)


loss_fn = cnnbp.losses.CategoricalCrossentropy()
optimizer = cnnbp.optimizers.Adam()


def train_model(model, X_train, y_train, epochs, batch_size):
    model.compile(optimizer=optimizer, loss=loss_fn, metrics=['accuracy'])
    return model.fit(X_train, y_train, epochs=epochs, batch_size=batch_size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    (x_train, y_train), (x_test, y_test) = cnnbp.datasets.load_fashion_mnist()
    x_train = (x_train / 255.0).astype("float32")[..., None]
    x_test = (x_test / 255.0).astype("float32")[..., None]
    y_train = cnnbp.utils.to_categorical(y_train, 10)
    y_test = cnnbp.utils.to_categorical(y_test, 10)
    model = cnn_model((28, 28, 1))
    model.summary()
    train_model(model, x_train, y_train, args.epochs, args.batch_size)
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy: {acc:.4f}  (loss {loss:.4f})")


if __name__ == "__main__":
    main()
