"""One trial: a Ray Train run of one network on one fold's train split, scored on its validation split.

`trial_fn` is the Tune function trainable. It builds the `TensorflowTrainer` of pipelines.train
and forwards every epoch's metrics to Tune (Tune's `TuneReportCallback`), so Optuna and ASHA see
them as they come. It never sees the test split: `predict_test` scores that after the search.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.config import TrainConfig
from pipelines.storage import Store, open_store

if TYPE_CHECKING:
    import pandas as pd
    from ray.train._internal.session import _TrainSession

FOLDS_DIR = "folds"
SEARCHES_DIR = "searches"


@dataclass(frozen=True)
class SearchKey:
    model: str
    scenario: str
    fold: int

    @property
    def path(self) -> str:
        return f"{SEARCHES_DIR}/{self.model}/{self.scenario}/fold-{self.fold}"

    @property
    def slug(self) -> str:
        return f"{self.model}-{self.scenario}-fold{self.fold}"

    def __str__(self) -> str:
        return f"{self.model} {self.scenario} fold {self.fold}"


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one search shares (small: it is stored with Tune's experiment state)."""

    results: str
    endpoint: str | None
    shards: str
    key: SearchKey
    metric: str  # what the search optimises: val_f1_macro, val_accuracy or val_loss
    train: dict[str, Any]  # TrainConfig fields the search does not vary
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    def store(self) -> Store:
        return open_store(self.results, self.endpoint)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrialContext:
        return TrialContext(**{**d, "key": SearchKey(**d["key"])})


def fold_table(store: Store, key: SearchKey) -> pd.DataFrame:
    """The rows of this search's fold: image_id, role, dataset, subject, label."""
    import io

    import pandas

    folds = pandas.read_parquet(io.BytesIO(store.read_bytes(FOLDS_DIR, f"{key.scenario}.parquet")))
    return folds[folds["fold"] == key.fold]


def role_ids(fold: pd.DataFrame) -> dict[str, set[str]]:
    """A fold table's image ids by role: train, val, test."""
    return {role: set(fold.loc[fold["role"] == role, "image_id"]) for role in ("train", "val", "test")}


def fold_datasets(shards: str, endpoint: str | None, ids: dict[str, set[str]], block_rows: int = 256):
    """(train, val) Ray Datasets of one fold.

    The fold's rows are read from the shards once per trial (pyarrow, local or S3) and handed to Ray
    Data as blocks in the object store: every epoch then streams them from memory, decoded by Ray Data
    tasks, instead of reading and filtering the shard files again (or planning a read per trial)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray.data

    from pipelines.shards import read_rows

    table = read_rows(shards, endpoint, ids["train"] | ids["val"], ["image", "label"])

    def part(role: str):
        keep = pc.is_in(table.column("image_id"), value_set=pa.array(sorted(ids[role]), pa.string()))
        rows = table.filter(keep).select(["image", "label"])
        blocks = [rows.slice(i, block_rows) for i in range(0, max(rows.num_rows, 1), block_rows)]
        return ray.data.from_arrow(blocks)

    return part("train"), part("val")


def train_config(ctx: TrialContext, params: dict[str, Any], metric: str) -> TrainConfig:
    return TrainConfig.model_validate({
        **ctx.train, "model": ctx.key.model, "learning_rate": float(params["learning_rate"]),
        "epochs": int(params["epochs"]), "finetune_depth": float(params.get("finetune_depth", 0.0)),
        "monitor": metric.removeprefix("val_"), "seed": int(ctx.train.get("seed", 0)) + ctx.key.fold,
    })


def root_error(text: str, fallback: str) -> str:
    """The innermost `SomeError: message` line of a traceback (Ray wraps a worker's error several times)."""
    import re

    for line in reversed(text.splitlines()):
        m = re.match(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Exhausted\w*)): (.+)$", line)
        if m and m.group(1) not in ("TrainingFailedError", "RayTaskError", "WorkerGroupError", "RayActorError"):
            return f"{m.group(1)}: {m.group(2)}"
    return fallback


def error_kind(text: str) -> str:
    """`out_of_memory` for the ways TensorFlow and Ray report running out of memory, else `error`."""
    needles = ("OutOfMemoryError", "ResourceExhaustedError", "OOM when allocating", "out of memory", "MemoryError")
    return "out_of_memory" if any(n in text for n in needles) else "error"


def tune_session() -> _TrainSession | None:
    """This trial's Tune session, taken when the trial starts (Tune drops it when it stops the trial)."""
    from ray.train._internal.session import get_session

    return get_session()


def stopped_by_tune(session: _TrainSession | None) -> bool:
    """Whether Tune has stopped this trial (ASHA cut it, or the search ended). Tune then removes the trial's
    placement group, which takes its Ray Train run down with it: that is not a failed attempt and is not
    recorded. The signs: Tune set the session's stop event, or it has already shut the session down."""
    from ray.train._internal.session import get_session

    return session is not None and (session.stop_event.is_set() or get_session() is not session)


def trial_fn(config: dict[str, Any], context: dict[str, Any]) -> None:
    """The Tune function trainable: one Ray Train run; each failed attempt is written down before it is re-raised."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipelines.train import make_trainer

    ctx = TrialContext.from_dict(context)
    metric = ctx.metric
    trial_id = tune.get_context().get_trial_id()
    session = tune_session()
    store = ctx.store()
    started = time.time()
    try:
        cfg = train_config(ctx, config, metric)
        fold = fold_table(store, ctx.key)
        train_ds, val_ds = fold_datasets(ctx.shards, ctx.endpoint, role_ids(fold))
        trainer = make_trainer(
            cfg, train_ds, val_ds, storage_path=f"{ctx.results.rstrip('/')}/{ctx.key.path}/train", name=trial_id,
            workers=ctx.workers, use_gpu=ctx.gpus_per_worker > 0, gpus_per_worker=ctx.gpus_per_worker or 1.0,
            cpus_per_worker=ctx.cpus_per_worker, endpoint=ctx.endpoint, callbacks=[TuneReportCallback()],
            labels=fold.loc[fold["role"] == "train", "label"].to_numpy(),
        )
        fit_started = time.time()
        trainer.fit()
        timing = {"trial_id": trial_id, "wall_s": time.time() - started, "setup_s": fit_started - started,
                  "fit_s": time.time() - fit_started,
                  # this process only drives the run; importing TensorFlow here costs every trial seconds of CPU
                  "driver_imported_tensorflow": "tensorflow" in sys.modules}
        runs = len([f for f in store.list(ctx.key.path, "timing") if f.startswith(f"{trial_id}-")])
        store.write_bytes(json.dumps(timing).encode(), ctx.key.path, "timing", f"{trial_id}-{runs}.json")
    except Exception as exc:
        if stopped_by_tune(session):
            raise
        text = "".join(traceback.format_exception(exc))
        attempt = len([f for f in store.list(ctx.key.path, "attempts") if f.startswith(trial_id)])
        record = {"trial_id": trial_id, "attempt": attempt, "kind": error_kind(text),
                  "error": root_error(text, f"{type(exc).__name__}: {exc}")[:2000], "traceback": text[-8000:]}
        store.write_bytes(json.dumps(record).encode(), ctx.key.path, "attempts", f"{trial_id}-{attempt}.json")
        raise


def predict_test(context: dict[str, Any], params: dict[str, Any], weights_file: str) -> bytes:
    """Score the fold's test images with the best trial's weights: a Parquet table of per-image predictions."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.models import build
    from pipelines.shards import read_rows
    from pipelines.train import _predict, decode_images

    ctx = TrialContext.from_dict(context)
    store = ctx.store()
    cfg = train_config(ctx, params, ctx.metric)
    test = role_ids(fold_table(store, ctx.key))["test"]
    table = read_rows(ctx.shards, ctx.endpoint, test, ["image", "label", "dataset", "subject"])
    size = cfg.size
    model = build(cfg.model, n_classes=cfg.n_classes, size=size, weights="none", finetune_depth=cfg.finetune_depth,
                  preprocessing=cfg.preprocessing, augment=cfg.augment)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.h5")
        with open(local, "wb") as f:
            f.write(store.read_bytes(weights_file))
        model.load_weights(local)
    probs = []
    images = table.column("image").to_pylist()
    for i in range(0, len(images), 64):
        probs.append(_predict(model, decode_images(images[i:i + 64], size), 64))
    probs = np.concatenate(probs) if probs else np.zeros((0, cfg.n_classes), np.float32)
    out = pa.table({
        "image_id": table.column("image_id"), "dataset": table.column("dataset"), "subject": table.column("subject"),
        "label": table.column("label"), **{f"prob_{c}": pa.array(probs[:, c].astype(np.float32)) for c in range(probs.shape[1])},
        "pred": pa.array(probs.argmax(axis=1).astype(np.int8)),
    })
    buf = io.BytesIO()
    pq.write_table(out, buf)
    return buf.getvalue()
