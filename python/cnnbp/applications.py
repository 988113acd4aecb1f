"""The reference models (the benchmarks and the command line use them).

- ``seed``: Conv2D(32, 3x3, ReLU) -> MaxPool 2 -> Flatten -> Dense(classes, softmax)
- ``lenet``: LeNet-5 with ReLU: Conv(6, 5x5, pad 2) -> MaxPool -> Conv(16, 5x5) -> MaxPool ->
  Dense 120 -> Dense 84 -> Dense(classes)
- ``vgg``: three blocks of two 3x3 'same' convolutions (32, 64, 128 filters) with 2x2 max pooling,
  then Dense 256 ReLU -> Dense(classes)
- ``resnet(depth)``: the CIFAR ResNet of He et al. (2016) -- a 3x3 convolution, then 3 stages of
  (depth - 2) / 6 basic blocks with 16, 32, 64 filters (each block: conv-BN-ReLU-conv-BN, added to
  its input -- through a 1x1 convolution and BN, the projection shortcut, where the shape changes --
  then ReLU), global average pooling, Dense(classes). ``resnet20`` is depth 20; ``small_resnet``
  (depth 8) is the preset for 28x28x1 images.
"""

from . import layers as L
from .models import Model, Sequential

__all__ = ["seed", "lenet", "vgg", "resnet", "resnet20", "small_resnet", "MODELS"]


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


def _conv_bn(x, filters, kernel, strides=1):
    y = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
    return L.BatchNormalization()(y)


def _basic_block(x, filters, strides, in_filters):
    y = L.ReLU()(_conv_bn(x, filters, 3, strides))
    y = _conv_bn(y, filters, 3)
    shortcut = x if strides == 1 and in_filters == filters else _conv_bn(x, filters, 1, strides)
    return L.ReLU()(L.Add()([y, shortcut]))


def resnet(depth=20, input_shape=(32, 32, 3), classes=10, name=None):
    """The CIFAR ResNet (He et al. 2016) of the given depth (6n + 2: 20, 32, 56, ...), with
    projection shortcuts where a stage changes the shape."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet: depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, ...), got {depth!r}")
    n = (depth - 2) // 6
    x = L.Input(input_shape)
    y = L.ReLU()(_conv_bn(x, 16, 3))
    filters = 16
    for stage, f in enumerate((16, 32, 64)):
        for b in range(n):
            strides = 2 if stage > 0 and b == 0 else 1
            y = _basic_block(y, f, strides, filters)
            filters = f
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(classes, activation="softmax")(y)
    return Model(x, y, name=name or f"resnet{depth}")


def resnet20(input_shape=(32, 32, 3), classes=10):
    """ResNet-20: 3 stages of 3 basic blocks (0.27 M weights)."""
    return resnet(20, input_shape, classes)


def small_resnet(input_shape=(28, 28, 1), classes=10):
    """ResNet-8 for 28x28x1 images (Fashion-MNIST): one basic block per stage."""
    return resnet(8, input_shape, classes, name="small_resnet")


def _separable_block(x, filters, strides):
    """MobileNet's block: depthwise 3x3 - BN - ReLU6, pointwise 1x1 - BN - ReLU6."""
    y = L.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x)
    y = L.ReLU(6.0)(L.BatchNormalization()(y))
    y = L.Conv2D(filters, 1, use_bias=False)(y)
    return L.ReLU(6.0)(L.BatchNormalization()(y))


def mobilenet(input_shape=(32, 32, 3), classes=10, alpha=0.5):
    """A small MobileNet (v1, Howard et al. 2017) for 32x32 images: a 3x3 conv, then depthwise-
    separable blocks of 64 .. 512 filters (times alpha), global average pooling and a classifier."""
    def f(n):
        return max(8, int(n * alpha))
    x = L.Input(input_shape)
    y = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(f(32), 3, padding="same", use_bias=False)(x)))
    for filters, strides in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)):
        y = _separable_block(y, f(filters), strides)
    y = L.Dense(classes, activation="softmax")(L.GlobalAveragePooling2D()(y))
    return Model(x, y, name="mobilenet")


MODELS = {"seed": seed, "lenet": lenet, "vgg": vgg, "resnet20": resnet20, "small_resnet": small_resnet,
          "mobilenet": mobilenet}
