"""The network registry as data: name -> paper input size, minimum size, pretrained or not, the reference
code's optimizer and learning rate, and where its builder lives.

Reading it imports neither TensorFlow nor Keras, so configs, the search space and the CLI can ask about
names and sizes for free; `pipelines.models.build` resolves a spec's builder only when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import PainsearchError, choices

KERAS_APPS = "tf_keras.applications"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    name: str
    builder: str  # "module:attribute": a from-scratch builder, or a Keras application class
    paper_size: int
    min_size: int
    pretrained: bool
    optimizer: str  # the reference code's choice
    learning_rate: float
    preprocess_input: str | None = None  # "module:attribute" of the application's own; None: rescale by 1/255
    weights_file: str | None = None  # the no-top ImageNet weights, below Keras's base URL (the name Keras caches)
    weights_md5: str | None = None  # the hash Keras's own loader checks that file against (tf_keras.applications)


def _scratch(name: str, paper_size: int, min_size: int, optimizer: str) -> ModelSpec:
    return ModelSpec(name=name, builder=f"pipelines.models.scratch:{name}", paper_size=paper_size, min_size=min_size,
                     pretrained=False, optimizer=optimizer, learning_rate=1e-4)


def _application(name: str, app: str, module: str, weights_file: str, md5: str, min_size: int = 32) -> ModelSpec:
    return ModelSpec(name=name, builder=f"{KERAS_APPS}:{app}", paper_size=224, min_size=min_size, pretrained=True,
                     optimizer="adam", learning_rate=1e-4, preprocess_input=f"{KERAS_APPS}.{module}:preprocess_input",
                     weights_file=weights_file, weights_md5=md5)


MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    _scratch("alexnet", 224, 32, "rmsprop"),
    _scratch("songnet", 224, 16, "rmsprop"),
    _scratch("weinet", 64, 8, "rmsprop"),
    _scratch("silnet", 150, 8, "adam"),
    _application("vgg16", "VGG16", "vgg16", "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "6d6bbae143d832006294945121d1f1fc"),
    _application("vgg19", "VGG19", "vgg19", "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "253f8cb515780f3b799900260a226db6"),
    _application("resnet50", "ResNet50", "resnet50", "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "4d473c1dd8becc155b73f8504c6f6626"),
    _application("resnet101v2", "ResNet101V2", "resnet_v2",
                 "resnet/resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5", "c0ed64b8031c3730f411d2eb4eea35b5"),
    _application("xception", "Xception", "xception", "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "b0042744bf5b25fce3cb969f33bebb97", min_size=71),
    _application("inceptionv3", "InceptionV3", "inception_v3",
                 "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "bcbd6486424b2319ff4ef7d526e38f63", min_size=75),
)}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
PRETRAINED: tuple[str, ...] = tuple(n for n, s in MODELS.items() if s.pretrained)


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise PainsearchError(f"Unknown model {name!r}; choose one of {choices(MODELS)}.")
    return MODELS[name]
