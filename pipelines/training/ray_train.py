"""The loop under Ray Train: a `TensorflowTrainer` whose workers run `pipelines.training.loop.run`.

Several workers train one model with MultiWorkerMirroredStrategy (NCCL on GPUs, ring on CPU); one worker
trains without the strategy. The training shards are decoded from PNG by Ray Data tasks and fed with
`to_tf`; the validation split is not split, so every worker scores all of it.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import retries
from pipelines.config import TrainConfig
from pipelines.training import checkpoint, determinism
from pipelines.training.data import DECODE_CPUS, class_weights, decode_batch, oversample_dataset

EPOCHS_DIR = "epochs"  # <run>/epochs/<epoch>.json: every epoch's metrics, beside Ray's own records


def epoch_file(epoch: int) -> str:
    """The name of an epoch's metrics file under `EPOCHS_DIR` (they sort in epoch order)."""
    return f"{int(epoch):04d}.json"


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs (the trainer's backend sets TF_CONFIG for the strategy)."""
    started_at = time.perf_counter()
    import ray.train

    from pipelines.bootstrap import tensorflow
    from pipelines.training.devices import require_given_gpus
    from pipelines.training.loop import run

    tf = tensorflow()
    cfg = TrainConfig.model_validate(config["train"])
    ctx = ray.train.get_context()
    # before TensorFlow touches a device: memory growth lets fractional trials share a card
    gpu = bool(require_given_gpus(f"A Ray Train worker of {cfg.model}", cfg.allow_cpu_fallback))
    if ctx.get_world_size() > 1:
        impl = tf.distribute.experimental.CommunicationImplementation
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(implementation=impl.NCCL if gpu else impl.RING)
        )
    else:  # one worker has nothing to synchronise: skip the strategy's gRPC server and collective set-up
        strategy = tf.distribute.get_strategy()
    per_worker = max(1, cfg.batch_size // ctx.get_world_size())
    shard = ray.train.get_dataset_shard("train")
    val_rows = list(_rows(ray.train.get_dataset_shard("val")))
    val = (np.concatenate([r["x"] for r in val_rows]), np.concatenate([r["y"] for r in val_rows]))

    def epoch_data(epoch: int):
        ds = shard.to_tf(feature_columns="x", label_columns="y", batch_size=per_worker, prefetch_batches=2, drop_last=True,
                         local_shuffle_buffer_size=4 * per_worker, local_shuffle_seed=cfg.seed + epoch)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options)

    def report(metrics: dict[str, Any], saved: str | None) -> None:
        ray.train.report({**metrics, **where()},
                         checkpoint=ray.train.Checkpoint.from_directory(saved) if saved else None)

    # a restarted worker group gets the run's latest checkpoint; a new run can be told where to start
    restore = ray.train.get_checkpoint() or config.get("resume_from")
    determinism.apply(cfg.deterministic)
    with tempfile.TemporaryDirectory(prefix="painsearch-restore-") if restore else nullcontext() as restore_dir:
        if restore:
            with restore.as_directory() as d:
                for f in Path(d).iterdir():
                    (Path(restore_dir) / f.name).write_bytes(f.read_bytes())
        run(cfg, strategy, epoch_data, val, report, restore_dir, config.get("class_weight"),
            is_chief=ctx.get_world_rank() == 0, started_at=started_at)


def where() -> dict[str, Any]:
    """Where and when an epoch ended: the Ray node, the GPUs Ray gave this process, the wall-clock time
    (what shows how trials shared the cluster)."""
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "time": time.time()}


def _rows(shard) -> Iterator[dict[str, np.ndarray]]:
    yield from shard.iter_batches(batch_size=256, batch_format="numpy")


def epoch_log_callback(store, name: str):
    """A Ray Train callback (it runs in the controller) that keeps every epoch's metrics beside the run:
    `<storage>/<name>/epochs/<epoch>.json`. Ray's Result keeps only the metrics of kept checkpoints.
    `store` is a `pipelines.storage.Store`."""
    from ray.train import UserCallback

    class EpochLog(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            # the chief's metrics, and where every worker ran (one entry per worker, in rank order)
            write_epoch(store, name, {**metrics[0], "worker_nodes": [m.get("node") for m in metrics]})

    return EpochLog()


def write_epoch(store, name: str, metrics: dict[str, Any]) -> None:
    store.write_bytes(json.dumps(metrics).encode(), name, EPOCHS_DIR, epoch_file(metrics["epoch"]))


def read_epochs(storage_path: str, name: str, endpoint: str | None = None) -> list[dict[str, Any]]:
    """The per-epoch metrics a run logged, in epoch order."""
    from pipelines.storage import open_store

    store = open_store(storage_path, endpoint)
    return [json.loads(store.read_bytes(name, EPOCHS_DIR, f)) for f in store.list(name, EPOCHS_DIR)]


def checkpoint_config(cfg: TrainConfig):
    """Keep the best epoch's checkpoint (by `checkpoint.RANK`); Ray Train keeps the latest besides."""
    from ray.train import CheckpointConfig

    return CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=checkpoint.RANK, checkpoint_score_order="max")


def make_trainer(
    cfg: TrainConfig,
    train_ds,
    val_ds,
    storage_path: str,
    name: str,
    workers: int = 1,
    use_gpu: bool = False,
    gpus_per_worker: float = 1.0,
    cpus_per_worker: float = 1.0,
    max_failures: int = retries.TRAIN_RUN,
    resume_from=None,
    endpoint: str | None = None,
    callbacks: list | None = None,
    labels: np.ndarray | None = None,
    placement_strategy: str = "PACK",
):
    """A `TensorflowTrainer` for one run: shards decoded once per epoch on the fly, the val split unsplit.

    `storage_path` is a folder or s3:// URI; the run lives at `<storage_path>/<name>`. `callbacks` are
    more Ray Train callbacks (Tune's `TuneReportCallback` when the run is a trial). `labels` (the train
    split's, if the caller knows them) saves a pass over the data for class weights."""
    from ray.train import DataConfig, FailureConfig, RunConfig, ScalingConfig

    from pipelines.storage import open_store
    from pipelines.training.tf_backend import KerasTrainer

    store = open_store(storage_path, endpoint)
    size = cfg.size
    if size is None:
        from pipelines.models import get_spec

        size = get_spec(cfg.model).paper_size
    if labels is None:
        labels = train_ds.select_columns(["label"]).to_pandas()["label"]
    labels = np.asarray(labels, dtype=int)
    if cfg.imbalance == "oversample":
        train_ds = oversample_dataset(train_ds, labels, cfg.n_classes)
    weights = class_weights(labels, cfg.n_classes) if cfg.imbalance == "class_weight" else None
    decode = {"fn_kwargs": {"size": size}, "batch_format": "numpy", "num_cpus": DECODE_CPUS}
    resources = {"CPU": cpus_per_worker}
    if use_gpu:
        resources["GPU"] = gpus_per_worker
    return KerasTrainer(  # a TensorflowTrainer whose set-up imports TensorFlow only where it trains (tf_backend)
        train_loop_per_worker,
        train_loop_config={"train": cfg.model_dump(), "class_weight": weights, "resume_from": resume_from},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources,
                                     placement_strategy=placement_strategy),
        datasets={"train": train_ds.map_batches(decode_batch, **decode),
                  "val": val_ds.map_batches(decode_batch, **decode)},
        # one worker reads the whole train split: no split, so no coordinator actor to start
        dataset_config=DataConfig(datasets_to_split=["train"] if workers > 1 else []),
        run_config=RunConfig(
            storage_path=store.root, storage_filesystem=store.fs, name=name,
            checkpoint_config=checkpoint_config(cfg),
            failure_config=FailureConfig(max_failures=max_failures),
            callbacks=[epoch_log_callback(store, name), *(callbacks or [])],
        ),
    )
