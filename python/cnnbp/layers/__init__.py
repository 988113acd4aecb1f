"""Layers: Keras names, arguments and defaults, arranged by family as Keras arranges them.

A layer object is a specification until its model is built; then its weights live in the C++
network's flat buffers, and ``layer.kernel`` / ``layer.bias`` are numpy views of them."""

from .base import InputLayer, Input, KerasTensor, Layer
from .convolutional import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .core import (ELU, Activation, Dense, Dropout, GaussianNoise, Identity, LeakyReLU, PReLU, ReLU, Softmax,
                   SpatialDropout2D)
from .merging import (Add, Average, Concatenate, Maximum, Multiply, Subtract, add, average, concatenate, maximum,
                      multiply, subtract)
from .normalization import BatchNormalization, LayerNormalization
from .pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D, GlobalAveragePooling1D,
                      GlobalAveragePooling2D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D,
                      GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from .preprocessing import (Normalization, RandomBrightness, RandomContrast, RandomCrop, RandomErasing, RandomFlip,
                            RandomRotation, RandomTranslation, RandomZoom, Rescaling)
from .reshaping import Cropping2D, Flatten, Permute, RepeatVector, Reshape, UpSampling2D, ZeroPadding2D
from .base import _pair, _padding  # noqa: F401  (cnnbp.ops normalises arguments the same way)

__all__ = [
    "Layer", "Input", "InputLayer", "Conv2D", "MaxPooling2D", "MaxPool2D", "AveragePooling2D",
    "AvgPool2D", "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPooling2D", "GlobalMaxPool2D", "Flatten",
    "Dense", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Dropout", "Identity", "BatchNormalization", "Add",
    "Subtract", "Multiply", "Average", "Maximum", "Concatenate", "ZeroPadding2D", "Cropping2D",
    "add", "subtract", "multiply", "average", "maximum", "concatenate", "Conv2DTranspose", "Reshape", "Permute",
    "UpSampling2D", "Conv1D", "MaxPooling1D", "MaxPool1D", "AveragePooling1D", "AvgPool1D", "GlobalAveragePooling1D",
    "GlobalAvgPool1D", "GlobalMaxPooling1D", "GlobalMaxPool1D", "DepthwiseConv2D", "SeparableConv2D",
    "SpatialDropout2D", "GaussianNoise", "PReLU", "LayerNormalization", "RepeatVector",
    "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom", "RandomCrop", "RandomContrast",
    "RandomBrightness", "RandomErasing", "Rescaling", "Normalization",
]
