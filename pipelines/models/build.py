"""`build`: a spec of the registry -> an uncompiled tf-keras model that takes RGB in [0, 255].

What every network shares is added here: the input, optional augmentation, the input preprocessing,
the ImageNet weights and the frozen fraction of a pretrained backbone. Nothing here imports Ray or
data code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Literal

from pipelines.bootstrap import tensorflow

tensorflow()

import tf_keras as keras  # noqa: E402
from tf_keras import layers  # noqa: E402

from pipelines.errors import PainsearchError  # noqa: E402
from pipelines.models.specs import MODELS, ModelSpec, get_spec  # noqa: E402
from pipelines.models.weights import weights_path  # noqa: E402

Weights = Literal["imagenet", "none"]
Preprocessing = Literal["application", "rescale"]


def resolve(ref: str) -> Callable:
    """`"module:attribute"` -> the attribute."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class Contrast(layers.RandomContrast):
    """Keras's `RandomContrast`, with `(x - mean) * factor + mean` written out: the stock layer runs TensorFlow's
    `AdjustContrastv2`, whose GPU kernel refuses to run under op determinism (`pipelines.training.determinism`).
    The factor is drawn as the stock layer draws it (one per batch, from the same generator and seed), and the
    mean is each image's per channel, as `tf.image.adjust_contrast` takes it."""

    def call(self, inputs, training=True):
        import tensorflow as tf

        if not training:
            return inputs
        x = tf.cast(inputs, self.compute_dtype)
        low, high = 1.0 - self.lower, 1.0 + self.upper
        seed = self._random_generator.make_seed_for_stateless_op()
        if seed is not None:
            factor = tf.random.stateless_uniform([], seed, low, high)
        else:
            factor = tf.random.uniform([], low, high, seed=self._random_generator.make_legacy_seed())
        mean = tf.reduce_mean(tf.cast(x, tf.float32), axis=[-3, -2], keepdims=True)
        out = (tf.cast(x, tf.float32) - mean) * factor + mean
        out = tf.cast(tf.clip_by_value(out, 0.0, 255.0), self.compute_dtype)
        out.set_shape(inputs.shape)
        return out


class Augment(layers.Layer):
    """The reference code's augmentation; white fill matches the removed background. Inactive at inference.

    One layer that calls its steps in turn, as `keras.Sequential` would, but built in one symbolic pass where a
    Sequential without an input shape takes two (its own graph, then the call); tracing the random image ops is
    most of building a small network. It holds no weights."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps = [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.03, fill_mode="constant", fill_value=255.0),
            layers.RandomTranslation(0.05, 0.05, fill_mode="constant", fill_value=255.0),
            Contrast(0.1),
        ]

    def call(self, inputs, training=None):
        for step in self.steps:
            inputs = step(inputs, training=training)
        return inputs


def augmentation() -> Augment:
    return Augment(name="augment")


def frozen_layers(backbone: keras.Model, finetune_depth: float) -> int:
    """How many layers of a pretrained backbone `finetune_depth` freezes, from its input side."""
    return int(round(finetune_depth * len(backbone.layers)))


def build(
    name: str,
    n_classes: int = 2,
    size: int | None = None,
    weights: Weights = "none",
    finetune_depth: float = 0.0,
    preprocessing: Preprocessing = "application",
    augment: bool = False,
    weights_dir: str | None = None,
) -> keras.Model:
    """An uncompiled model that takes RGB images in [0, 255] and returns class probabilities.

    `finetune_depth` is the fraction of the pretrained backbone frozen, from its input side: 0 trains
    everything (the paper's choice), 1 only the head. Frozen BatchNorm layers run in inference mode.
    The frozen layers change the order in which tf-keras saves weights, so a trained model is rebuilt
    with the same depth before its weights are loaded (`pipelines.models.loader`).
    """
    spec = get_spec(name)
    size = size or spec.paper_size
    if size < spec.min_size:
        raise PainsearchError(f"{name} needs an input of at least {spec.min_size} px, not {size}; ask for a larger size.")
    if not 0.0 <= finetune_depth <= 1.0:
        raise PainsearchError(f"finetune_depth must be between 0 (train all) and 1 (head only), not {finetune_depth}.")
    if weights not in ("imagenet", "none"):
        raise PainsearchError(f"weights must be one of imagenet, none, not {weights!r}.")
    if weights == "imagenet" and not spec.pretrained:
        raise PainsearchError(f"{name} is trained from scratch and has no ImageNet weights; use weights 'none'.")
    shape = (size, size, 3)
    inputs = keras.Input(shape=shape, name="image")
    x = augmentation()(inputs) if augment else inputs
    if preprocessing == "application" and spec.preprocess_input is not None:
        x = layers.Lambda(resolve(spec.preprocess_input), name="preprocess_input")(x)
    else:
        x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    if not spec.pretrained:
        body = resolve(spec.builder)(shape, n_classes)
        return keras.Model(inputs, body(x), name=name)
    source = str(weights_path(name, weights_dir)) if weights == "imagenet" else None
    backbone = resolve(spec.builder)(include_top=False, weights=source, input_shape=shape)
    frozen = frozen_layers(backbone, finetune_depth)
    for layer in backbone.layers[:frozen]:
        layer.trainable = False  # in tf-keras a frozen BatchNormalization also uses its moving statistics
    x = backbone(x, training=False if frozen == len(backbone.layers) else None)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def model_table(n_classes: int = 2, names: list[str] | tuple[str, ...] | None = None) -> list[dict]:
    """The paper's Table 3: name, input size, parameters (Keras's count_params), pretrained."""
    rows = []
    for name, spec in MODELS.items():
        if names is not None and name not in names:
            continue
        rows.append(_row(spec, int(build(name, n_classes=n_classes).count_params())))
        keras.backend.clear_session()
    return rows


def _row(spec: ModelSpec, parameters: int) -> dict:
    return {"name": spec.name, "input_size": spec.paper_size, "parameters": parameters, "pretrained": spec.pretrained}
