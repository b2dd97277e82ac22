"""Name -> builder, paper input size, and what `build` needs to know about each network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import tf_keras as keras
from tf_keras import layers

from pipelines.config import MODEL_NAMES
from pipelines.errors import PainsearchError, choices
from pipelines.models import scratch
from pipelines.models.weights import NOTOP_FILES, weights_path

Weights = Literal["imagenet", "none"]
Preprocessing = Literal["application", "rescale"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., keras.Model]
    paper_size: int
    min_size: int
    pretrained: bool
    optimizer: str  # the reference code's choice
    learning_rate: float
    preprocess_input: Callable | None = None  # the application's own; None: rescale by 1/255


def _application(app: Callable) -> Callable[..., keras.Model]:
    def backbone(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        return app(include_top=False, weights=weights, input_shape=input_shape)

    return backbone


def _specs() -> dict[str, ModelSpec]:
    apps = keras.applications
    out = {
        "alexnet": ModelSpec("alexnet", scratch.alexnet, 224, 32, False, "rmsprop", 1e-4),
        "songnet": ModelSpec("songnet", scratch.songnet, 224, 16, False, "rmsprop", 1e-4),
        "weinet": ModelSpec("weinet", scratch.weinet, 64, 8, False, "rmsprop", 1e-4),
        "silnet": ModelSpec("silnet", scratch.silnet, 150, 8, False, "adam", 1e-4),
        "vgg16": ModelSpec("vgg16", _application(apps.VGG16), 224, 32, True, "adam", 1e-4, apps.vgg16.preprocess_input),
        "vgg19": ModelSpec("vgg19", _application(apps.VGG19), 224, 32, True, "adam", 1e-4, apps.vgg19.preprocess_input),
        "resnet50": ModelSpec("resnet50", _application(apps.ResNet50), 224, 32, True, "adam", 1e-4, apps.resnet50.preprocess_input),
        "resnet101v2": ModelSpec("resnet101v2", _application(apps.ResNet101V2), 224, 32, True, "adam", 1e-4, apps.resnet_v2.preprocess_input),
        "xception": ModelSpec("xception", _application(apps.Xception), 224, 71, True, "adam", 1e-4, apps.xception.preprocess_input),
        "inceptionv3": ModelSpec("inceptionv3", _application(apps.InceptionV3), 224, 75, True, "adam", 1e-4, apps.inception_v3.preprocess_input),
    }
    assert set(NOTOP_FILES) == {k for k, v in out.items() if v.pretrained}
    assert tuple(out) == MODEL_NAMES, "pipelines.config.MODEL_NAMES must list the registry"
    return out


MODELS: dict[str, ModelSpec] = _specs()


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise PainsearchError(f"Unknown model {name!r}; choose one of {choices(MODELS)}.")
    return MODELS[name]


def augmentation() -> keras.Sequential:
    """The reference code's augmentation; white fill matches the removed background. Inactive at inference."""
    return keras.Sequential([
        layers.RandomFlip("horizontal"),
        layers.RandomRotation(0.03, fill_mode="constant", fill_value=255.0),
        layers.RandomTranslation(0.05, 0.05, fill_mode="constant", fill_value=255.0),
        layers.RandomContrast(0.1),
    ], name="augment")


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
        x = layers.Lambda(spec.preprocess_input, name="preprocess_input")(x)
    else:
        x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    if not spec.pretrained:
        body = spec.builder(shape, n_classes)
        return keras.Model(inputs, body(x), name=name)
    source = str(weights_path(name, weights_dir)) if weights == "imagenet" else None
    backbone = spec.builder(shape, source)
    frozen = int(round(finetune_depth * len(backbone.layers)))
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
        model = build(name, n_classes=n_classes)
        rows.append({"name": name, "input_size": spec.paper_size, "parameters": int(model.count_params()),
                     "pretrained": spec.pretrained})
        keras.backend.clear_session()
    return rows
