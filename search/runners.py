"""What runs a trial's Keras loop: `inline`, in the Tune trial's own process, or `ray_train`, a Ray Train run.

- `inline` (trials of one worker): the loop runs in the trial's Tune actor, which holds the trial's CPUs
  and GPU share. Tune reuses the actor for the search's next trial, so TensorFlow, the model code and the
  fold's decoded images are loaded once per actor, not once per trial (`fold_arrays`), and each network is
  built once per actor and reset for each trial (`pipelines.training.model_cache`); Keras's graphs are cleared
  between trials. A trial costs its training, not a Ray Train start-up.
- `ray_train` (several workers): a `TensorflowTrainer` with MultiWorkerMirroredStrategy, one run per trial.

Either way the trial's run keeps the same things in the results store (`search.layout`): every epoch's
metrics under `train/<trial>/epochs/`, its best-ranked and latest checkpoints under
`train/<trial>/checkpoint_*`; a trial restarted after a kill continues from its latest checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipelines.ray_compat import CHECKPOINT_PREFIX
from pipelines.storage import Store
from pipelines.training import checkpoint, keras_state

Runner = Literal["inline", "ray_train"]
RUNNERS: tuple[str, ...] = ("inline", "ray_train")

# Per Tune actor: the decoded images of the fold its last trial trained on, (key, (train, val)).
_FOLD_CACHE: dict[tuple, tuple] = {}


def runner_for(choice: str, workers: int) -> Runner:
    """`auto` picks `inline` for one worker per trial (nothing to synchronise) and `ray_train` for several."""
    if choice != "auto":
        return choice  # type: ignore[return-value]
    return "inline" if workers == 1 else "ray_train"


def checkpoint_name(epoch: int) -> str:
    return f"{CHECKPOINT_PREFIX}{epoch:06d}"


def checkpoint_dirs(store: Store, run: str) -> list[str]:
    """Every checkpoint folder of a run, whole or cut short by a kill."""
    return [d for d in store.dirs(run) if d.startswith(CHECKPOINT_PREFIX)]


def kept_states(store: Store, run: str) -> dict[str, dict[str, Any]]:
    """The whole checkpoints a run keeps in the store (folder -> saved state: epoch, best epoch, patience), each
    with its epoch's metrics logged. A folder a kill cut short (no weights, or no state, which is written last)
    or whose epoch was never logged does not count: that epoch is trained again from the one before."""
    import json

    from search.layout import EPOCHS_DIR, epoch_file

    logged = set(store.list(run, EPOCHS_DIR))
    out = {}
    for d in checkpoint_dirs(store, run):
        if not {checkpoint.WEIGHTS_FILE, checkpoint.STATE_FILE} <= set(store.list(run, d)):
            continue
        state = json.loads(store.read_bytes(run, d, checkpoint.STATE_FILE))
        if epoch_file(state["epoch"]) in logged:
            out[d] = state
    return out


def latest_checkpoint(store: Store, run: str) -> str | None:
    """The folder of a run's latest kept checkpoint (where a restarted trial continues), or None."""
    states = kept_states(store, run)
    return max(states, key=lambda d: states[d]["epoch"]) if states else None


def download(store: Store, run: str, folder: str) -> str:
    """A kept checkpoint copied into a local temporary folder (what the loop restores from)."""
    local = tempfile.mkdtemp(prefix="painsearch-restore-")
    for name in store.list(run, folder):
        (Path(local) / name).write_bytes(store.read_bytes(run, folder, name))
    return local


def resume_point(store: Store, run: str, cfg) -> tuple[str | None, dict[str, Any] | None]:
    """Where a restarted trial continues: (its latest checkpoint's folder, or None), and, when that checkpoint
    ends the run (last epoch done, or patience ran out), the metrics of that epoch, which the trial reports
    again in place of training: Tune needs a result, and its record of the run may predate the kill."""
    import json

    from search.layout import EPOCHS_DIR, epoch_file

    latest = latest_checkpoint(store, run)
    if latest is None:
        return None, None
    state = kept_states(store, run)[latest]
    if not checkpoint.finished(state, cfg.epochs, cfg.monitor, cfg.patience):
        return latest, None
    return latest, json.loads(store.read_bytes(run, EPOCHS_DIR, epoch_file(state["epoch"])))


def fold_arrays(ctx, fold) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The fold's (train, val) images decoded at the trial's size as uint8, from this actor's cache when its last
    trial trained on the same fold: the shards are read and decoded once per actor and fold."""
    from pipelines.shards.read import read_rows
    from pipelines.training.data import decode_images
    from search.folds import role_ids

    ids = role_ids(fold)
    key = (ctx.shards, ctx.key.scenario, ctx.key.fold, int(ctx.train["size"]), len(ids["train"]), len(ids["val"]))
    if key not in _FOLD_CACHE:
        _FOLD_CACHE.clear()
        table = read_rows(ctx.shards, ctx.endpoint, ids["train"] | ids["val"], ["image", "label"])
        keys = np.asarray(table.column("image_id").to_pylist())
        x = decode_images(table.column("image").to_pylist(), int(ctx.train["size"]), np.uint8)
        y = np.asarray(table.column("label").to_pylist(), dtype=np.int64)
        train = np.isin(keys, sorted(ids["train"]))
        _FOLD_CACHE[key] = ((x[train], y[train]), (x[~train], y[~train]))
    return _FOLD_CACHE[key]


class CheckpointKeeper:
    """Writes each epoch's checkpoint to the store and keeps only the best-ranked and the latest ones, the policy
    Ray Train and Tune apply to their own (`pipelines.training.checkpoint`)."""

    def __init__(self, store: Store, run: str) -> None:
        self.store, self.run = store, run
        self.kept = {d: (int(s["epoch"]), int(s["epoch"]) if s.get("best_epoch") == s["epoch"] else -1)
                     for d, s in kept_states(store, run).items()}

    def add(self, saved: str, epoch: int, rank: int) -> None:
        folder = checkpoint_name(epoch)
        # the state last: a folder with it is whole (`kept_states`); the files are moved, not copied
        for f in sorted(Path(saved).iterdir(), key=lambda f: f.name == checkpoint.STATE_FILE):
            self.store.move_file(f, self.run, folder, f.name)
        self.kept[folder] = (epoch, rank)
        latest = max(self.kept, key=lambda d: self.kept[d][0])
        best = max(self.kept, key=lambda d: self.kept[d][1])
        for d in [d for d in self.kept if d not in (latest, best)]:
            self.store.delete_dir(self.run, d)
            del self.kept[d]


def run_inline(ctx, cfg, run: str, store: Store, fold, latest: str | None) -> None:
    """The loop in this Tune actor; every epoch goes to the store and to Tune."""
    from ray import tune

    from pipelines.training.loop import fit_arrays
    from pipelines.training.ray_train import where, write_epoch

    train, val = fold_arrays(ctx, fold)
    keeper = CheckpointKeeper(store, run)
    restore = download(store, run, latest) if latest else None

    def report(metrics: dict[str, Any], saved: str | None) -> None:
        metrics = {**metrics, **where()}
        write_epoch(store, run, metrics)
        if saved:
            keeper.add(saved, int(metrics["epoch"]), int(metrics[checkpoint.RANK]))
        tune.report(metrics)

    before = keras_state.registered_gradients()
    try:
        fit_arrays(cfg, train, val, report, restore, reuse_model=True)
    finally:  # the actor runs the search's next trial: this one's graphs go (its network is kept, reset, for it)
        keras_state.release(before)
        if restore:
            shutil.rmtree(restore, ignore_errors=True)


def run_ray_train(ctx, cfg, run: str, store: Store, fold, latest: str | None) -> None:
    """One Ray Train run; every epoch reaches Tune through Tune's callback."""
    from ray.train import Checkpoint
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipelines.training.ray_train import make_trainer
    from search.folds import fold_datasets, role_ids

    train_ds, val_ds = fold_datasets(ctx.shards, ctx.endpoint, role_ids(fold))
    parent, name = run.rsplit("/", 1)
    trainer = make_trainer(
        cfg, train_ds, val_ds, storage_path=store.uri_of(parent), name=name,
        workers=ctx.workers, use_gpu=ctx.gpus_per_worker > 0, gpus_per_worker=ctx.gpus_per_worker or 1.0,
        cpus_per_worker=ctx.cpus_per_worker, endpoint=ctx.endpoint, callbacks=[TuneReportCallback()],
        labels=fold.loc[fold["role"] == "train", "label"].to_numpy(), placement_strategy=ctx.placement,
        resume_from=Checkpoint(store.path(run, latest), filesystem=store.fs) if latest else None,
    )
    trainer.fit()


RUN = {"inline": run_inline, "ray_train": run_ray_train}
