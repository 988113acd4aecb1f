"""Training on real data: Fashion-MNIST (Debian's dataset-fashion-mnist; .ci/run installs it).

The reference Keras program, with tf.keras replaced by cnnbp and the missing Model(...) added,
reaches >= 0.87 test accuracy after 2 epochs; LeNet-5 with SGD momentum reaches >= 0.84 after 3."""

import numpy as np
import pytest

import cnnbp

from conftest import fashion_mnist_or_skip

pytestmark = pytest.mark.slow


def prepared():
    (x_train, y_train), (x_test, y_test) = fashion_mnist_or_skip()
    x_train = (x_train / 255.0).astype(np.float32)[..., None]
    x_test = (x_test / 255.0).astype(np.float32)[..., None]
    return x_train, cnnbp.utils.to_categorical(y_train, 10), x_test, cnnbp.utils.to_categorical(y_test, 10)


# ---- the reference program, as the user wrote it for tf.keras --------------------------------
def cnn_model(input_shape):
    input_layer = cnnbp.layers.Input(shape=input_shape)
    conv_layer = cnnbp.layers.Conv2D(32, (3, 3), activation='relu')(input_layer)
    pool_layer = cnnbp.layers.MaxPooling2D((2, 2))(conv_layer)
    flatten_layer = cnnbp.layers.Flatten()(pool_layer)
    dense_layer = cnnbp.layers.Dense(10, activation='softmax')(flatten_layer)
    model = cnnbp.Model(input_layer, dense_layer)  # the line the original forgot
    return model


loss_fn = cnnbp.losses.CategoricalCrossentropy()
optimizer = cnnbp.optimizers.Adam()


def train_model(model, X_train, y_train, epochs, batch_size):
    model.compile(optimizer=optimizer, loss=loss_fn, metrics=['accuracy'])
    model.fit(X_train, y_train, epochs=epochs, batch_size=batch_size)
# ------------------------------------------------------------------------------------------------


def test_reference_program_reaches_87_percent_in_2_epochs(capsys):
    x_train, y_train, x_test, y_test = prepared()
    cnnbp.set_seed(0)
    model = cnn_model((28, 28, 1))
    train_model(model, x_train, y_train, epochs=2, batch_size=32)
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    with capsys.disabled():
        print(f"\n  reference program: test accuracy {acc:.4f} after 2 epochs (loss {loss:.4f})")
    assert acc >= 0.87


def test_lenet5_reaches_84_percent_in_3_epochs(capsys):
    x_train, y_train, x_test, y_test = prepared()
    L = cnnbp.layers
    cnnbp.set_seed(0)
    model = cnnbp.Sequential([
        L.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding=2, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=cnnbp.optimizers.SGD(0.01, momentum=0.9), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    with capsys.disabled():
        print(f"\n  LeNet-5: test accuracy {acc:.4f} after 3 epochs (loss {loss:.4f})")
    assert acc >= 0.84


def test_resnet20_beats_the_seed_model_after_the_same_epochs(capsys):
    """ResNet-20 (28x28x1: stages at 28, 14, 7) against the reference CNN, both 3 epochs on the
    first 20,000 training images, batch 32, Adam; the ResNet's last epoch at a tenth of the rate
    (measured: 0.902 vs 0.867 test accuracy)."""
    x_train, y_train, x_test, y_test = prepared()
    x_train, y_train = x_train[:20000], y_train[:20000]
    accs = {}
    for name in ("seed", "resnet20"):
        cnnbp.set_seed(0)
        if name == "seed":
            model, callbacks = cnn_model((28, 28, 1)), []
        else:
            model = cnnbp.applications.resnet(20, (28, 28, 1), 10)
            callbacks = [cnnbp.callbacks.LearningRateScheduler(lambda epoch, lr: 1e-3 if epoch < 2 else 1e-4)]
        model.compile(optimizer=cnnbp.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0, callbacks=callbacks)
        accs[name] = model.evaluate(x_test, y_test, verbose=0)[1]
    with capsys.disabled():
        print(f"\n  3 epochs on 20k images: ResNet-20 {accs['resnet20']:.4f}, seed model {accs['seed']:.4f}")
    assert accs["resnet20"] >= 0.88 and accs["resnet20"] > accs["seed"] + 0.01


@pytest.mark.parametrize("path", ["avx512_bf16", "emulated"])
def test_mixed_bfloat16_reaches_the_float32_accuracy(path, capsys):
    """The reference program under the mixed_bfloat16 policy: 2 epochs, within 0.3 points of the
    same program in float32 (the issue's bound; bench/README.md has the longer runs)."""
    import os
    import subprocess
    import sys
    if path == "avx512_bf16" and cnnbp._core.bf16_detected() != "avx512_bf16":
        pytest.skip("the CPU has no AVX512_BF16")
    fashion_mnist_or_skip()
    code = """if True:
        import sys, cnnbp
        sys.path.insert(0, {tests!r})
        from test_fashion_mnist import prepared, cnn_model, train_model
        x, y, xt, yt = prepared()
        accs = []
        for policy in ("float32", "mixed_bfloat16"):
            cnnbp.mixed_precision.set_global_policy(policy)
            cnnbp.set_seed(0)
            model = cnn_model((28, 28, 1))
            model.compile(optimizer=cnnbp.optimizers.Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
            model.fit(x, y, epochs=2, batch_size=32, verbose=0)
            accs.append(model.evaluate(xt, yt, verbose=0)[1])
        print(cnnbp.mixed_precision.path(), accs[0], accs[1])
    """.format(tests=os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, CNNBP_BF16="emulated") if path == "emulated" else dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    ran, f32, bf16 = out.stdout.split()
    f32, bf16 = float(f32), float(bf16)
    with capsys.disabled():
        print(f"\n  reference program, 2 epochs: float32 {f32:.4f}, mixed_bfloat16 ({ran}) {bf16:.4f}")
    assert ran == path
    assert bf16 >= f32 - 0.003
