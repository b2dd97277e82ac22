"""The model zoo: one registry from a name to a small builder, and one `build` that wraps it.

A builder is pure: `(input_shape, n_classes) -> uncompiled tf-keras model` for the from-scratch
networks, or the backbone for the pretrained ones. `build` adds what every network shares: the input,
optional augmentation, the input preprocessing, the ImageNet weights and the frozen fraction.
Nothing here imports Ray or data code.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pipelines._torch_first  # noqa: E402,F401  (torch after TensorFlow segfaults)

from pipelines.models.registry import (  # noqa: E402
    MODELS,
    ModelSpec,
    build,
    get_spec,
    model_table,
)
from pipelines.models.weights import fetch_weights, weights_path  # noqa: E402

__all__ = ["MODELS", "ModelSpec", "build", "fetch_weights", "get_spec", "model_table", "weights_path"]
