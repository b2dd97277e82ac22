"""The four networks the paper trained from scratch, layer by layer as in docs/networks.md.

Every Conv2D and MaxPooling2D uses padding "same" and ReLU; the head is Dense(n_classes, softmax).
"""

from __future__ import annotations

import tf_keras as keras
from tf_keras import layers


def _conv(filters: int, kernel: int, stride: int = 1, **kw) -> layers.Layer:
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", activation="relu", **kw)


def _pool(size: int, stride: int) -> layers.Layer:
    return layers.MaxPooling2D(size, strides=stride, padding="same")


def _sequential(name: str, input_shape: tuple[int, int, int], body: list[layers.Layer], n_classes: int) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for layer in body:
        x = layer(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def songnet(input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
    """Song et al. 2014: four small convolutions, heavy pooling, dropout."""
    return _sequential("songnet", input_shape, [
        _conv(64, 5), _pool(3, 2), _conv(64, 5), _pool(3, 2), _conv(32, 3), _pool(3, 2), layers.Dropout(0.5),
        _conv(32, 3), _pool(3, 2), layers.Dropout(0.5), layers.Flatten(),
    ], n_classes)


def weinet(input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
    """Li et al. 2015: three 7x7 convolutions with stride-1 pooling, for 64 px faces."""
    return _sequential("weinet", input_shape, [
        _conv(32, 7), _pool(2, 1), _conv(32, 7), _pool(2, 1), _conv(64, 7), _pool(2, 1), layers.Flatten(),
    ], n_classes)


def silnet(input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
    """Ramis et al. 2022: large kernels, two 512-unit dense layers, glorot-normal everywhere."""
    g = {"kernel_initializer": "glorot_normal"}
    return _sequential("silnet", input_shape, [
        _conv(32, 11, **g), _pool(2, 2), _conv(32, 7, **g), _conv(32, 7, **g), _pool(2, 1),
        _conv(64, 5, **g), _conv(64, 5, **g), _pool(2, 1), layers.Flatten(),
        layers.Dense(512, activation="relu", **g), layers.Dropout(0.5), layers.Dense(512, activation="relu", **g),
    ], n_classes)


def alexnet(input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
    """The reference code's AlexNet variant: no normalisation layers, three 4096-unit dense layers."""
    return _sequential("alexnet", input_shape, [
        _conv(96, 11, stride=4), _pool(3, 2), _conv(256, 5), _pool(3, 2), _conv(384, 3), _conv(384, 3),
        _conv(256, 3), _pool(3, 2), layers.Flatten(), layers.Dense(4096, activation="relu"), layers.Dropout(0.4),
        layers.Dense(4096, activation="relu"), layers.Dense(4096, activation="relu"), layers.Dropout(0.4),
    ], n_classes)
