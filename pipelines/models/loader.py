"""The one loader of trained models: rebuild a network from its run's recorded settings, then load its weights.

tf-keras saves the weights of a partly frozen backbone in another order than those of the same network
fully trainable, so the model is rebuilt with the run's own `finetune_depth` (and size, preprocessing,
classes); no ImageNet file is needed, the trained weights replace everything. Test scoring, LIME,
`predict` and `export` all load through here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipelines.config import TrainConfig


def rebuild(train: TrainConfig | dict[str, Any], seed: int | None = None):
    """The network of a run with fresh (seeded) weights: what `load_trained` fills, and the re-initialised
    model that LIME's randomisation check explains beside the trained one."""
    import tf_keras as keras

    from pipelines.models.build import build

    cfg = TrainConfig.model_validate(train)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return build(cfg.model, n_classes=cfg.n_classes, size=cfg.size, weights="none", finetune_depth=cfg.finetune_depth,
                 preprocessing=cfg.preprocessing, augment=cfg.augment)


def load_trained(train: TrainConfig | dict[str, Any], weights: str | Path):
    """The trained model of a run: rebuilt as it was trained, with the weights in the `.h5` file `weights`."""
    model = rebuild(train)
    model.load_weights(str(weights))
    return model


def load_from_store(train: TrainConfig | dict[str, Any], store, *parts: str):
    """`load_trained` with weights kept in a results store (local or S3)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model.h5"
        local.write_bytes(store.read_bytes(*parts))
        return load_trained(train, local)
