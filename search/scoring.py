"""After a search: the refit (with `study.refit`) and the one scoring of the test split (and of the validation
split, which the report's operating point and calibration are fitted on).

Both run as Ray tasks, so a cluster places them where TensorFlow and the data are; neither sees a
choice being made: the settings and the epoch count come from the validation split alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from search.folds import fold_table, role_ids
from search.layout import BEST_DIR, REFIT_DIR, REFIT_WEIGHTS, predictions_bytes
from search.trial import TrialContext


def score_splits(context: dict[str, Any], train: dict[str, Any], weights: dict[str, str]) -> dict[str, bytes]:
    """The fold's images of each role in `weights` (`test`, `val`) scored with the weights named for it (a path in
    the results store): per role a Parquet table of per-image predictions (`search.layout.predictions_schema`).
    Weights named for several roles are loaded once."""
    from pipelines.models.loader import load_from_store
    from pipelines.shards.read import read_rows
    from pipelines.training.data import decode_images
    from pipelines.training import determinism
    from pipelines.training.devices import require_given_gpus
    from pipelines.training.loop import INFERENCE_BATCH, predict

    ctx = TrialContext.from_dict(context)
    require_given_gpus(f"The scoring of {ctx.key}", bool(train.get("allow_cpu_fallback")))
    determinism.apply(bool(train.get("deterministic", True)))  # the study's setting, whatever ran here before
    store = ctx.store()
    ids = role_ids(fold_table(store, ctx.key))
    models = {w: load_from_store(train, store, w) for w in dict.fromkeys(weights.values())}
    # the shards are read once for every role's images (a read goes through every shard file)
    rows = read_rows(ctx.shards, ctx.endpoint, set().union(*(ids[role] for role in weights)),
                     ["image", "label", "dataset", "subject"])
    out = {}
    for role, w in weights.items():
        table = rows.filter(pc.is_in(rows.column("image_id"), value_set=pa.array(sorted(ids[role]), pa.string())))
        model = models[w]
        size = model.input_shape[1]
        images = table.column("image").to_pylist()
        probs = [predict(model, decode_images(images[i:i + INFERENCE_BATCH], size), INFERENCE_BATCH)
                 for i in range(0, len(images), INFERENCE_BATCH)]
        p = np.concatenate(probs) if probs else np.zeros((0, int(train["n_classes"])), np.float32)
        out[role] = predictions_bytes(pa.table({
            "image_id": table.column("image_id"), "dataset": table.column("dataset"),
            "subject": table.column("subject"), "label": table.column("label"),
            **{f"prob_{c}": pa.array(p[:, c].astype(np.float32)) for c in range(p.shape[1])},
            "pred": pa.array(p.argmax(axis=1).astype(np.int8)),
        }))
    return out


def refit(context: dict[str, Any], train: dict[str, Any], epochs: int) -> str:
    """Retrain the chosen settings on the fold's training + validation images for `epochs` epochs (no
    validation, nothing stops early); the weights go to `best/refit.h5`, every epoch to `refit/epochs/`.
    Returns the weights' path in the store."""
    from pathlib import Path

    from pipelines.config import TrainConfig
    from pipelines.shards.read import read_rows
    from pipelines.training.checkpoint import WEIGHTS_FILE
    from pipelines.training.data import decode_images
    from pipelines.training.loop import fit_arrays
    from pipelines.training.ray_train import write_epoch

    ctx = TrialContext.from_dict(context)
    store = ctx.store()
    ids = role_ids(fold_table(store, ctx.key))
    table = read_rows(ctx.shards, ctx.endpoint, ids["train"] | ids["val"], ["image", "label"])
    cfg = TrainConfig.model_validate({**train, "epochs": epochs})
    x = decode_images(table.column("image").to_pylist(), cfg.size)
    y = np.asarray(table.column("label").to_pylist(), dtype=np.int64)
    target = ctx.key.of(BEST_DIR, REFIT_WEIGHTS)

    def report(metrics: dict[str, Any], saved: str | None) -> None:
        write_epoch(store, ctx.key.of(REFIT_DIR), metrics)
        if saved and metrics["epoch"] == epochs - 1:
            store.move_file(Path(saved) / WEIGHTS_FILE, target)

    fit_arrays(cfg, (x, y), None, report)
    return target
