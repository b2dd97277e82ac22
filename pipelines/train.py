"""The Keras training loop: one function that Ray Train runs on every worker, and the same loop in-process.

Written against tf-keras (TF_USE_LEGACY_KERAS=1) because Keras 3 with MultiWorkerMirroredStrategy
fails under Ray Train (reference/stack-notes.md). The global batch is split across workers; every
worker scores the whole validation split, so early stopping sees the same numbers everywhere.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.config import TrainConfig  # noqa: E402
from pipelines.metrics import classification_metrics  # noqa: E402

WEIGHTS_FILE = "model.h5"
STATE_FILE = "state.json"
Report = Callable[[dict[str, Any], "str | None"], None]


# ---------------------------------------------------------------- data


def decode_images(images: Any, size: int) -> np.ndarray:
    """PNG bytes -> float32 N x size x size x 3 in [0, 255] (what every model's first layer expects)."""
    out = np.empty((len(images), size, size, 3), dtype=np.float32)
    for i, data in enumerate(images):
        img = Image.open(io.BytesIO(data)).convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(img, dtype=np.float32)
    return out


def decode_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Ray Data map_batches step: shard rows -> `x` (images) and `y` (labels)."""
    return {"x": decode_images(batch["image"], size), "y": np.asarray(batch["label"], dtype=np.int64)}


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse class frequency, normalised so a balanced set gets weights of 1."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    counts[counts == 0] = 1.0
    return {c: float(len(labels) / (n_classes * counts[c])) for c in range(n_classes)}


def oversample(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices that repeat minority-class rows until every class is as frequent as the largest."""
    labels = np.asarray(labels, dtype=int)
    rng = np.random.default_rng(seed)
    top = np.bincount(labels).max()
    parts = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    idx = np.concatenate([np.concatenate([p, rng.choice(p, top - len(p), replace=True)]) for p in parts])
    return np.sort(idx)


# ---------------------------------------------------------------- the loop


def _optimizer(cfg: TrainConfig):
    import tf_keras as keras

    from pipelines.models import get_spec

    spec = get_spec(cfg.model)
    name = cfg.optimizer or spec.optimizer
    lr = cfg.learning_rate or spec.learning_rate
    return {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}[name](learning_rate=lr)


def _use_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Direct calls, not `predict`: each worker scores the whole set with no collective ops."""
    outs = [model(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 2), np.float32)


def run(
    cfg: TrainConfig,
    strategy,
    epoch_data: Callable[[int], Any],
    val: tuple[np.ndarray, np.ndarray],
    report: Report,
    restore_dir: str | None,
    class_weight: dict[int, float] | None,
    is_chief: bool = True,
    started_at: float | None = None,
):
    """Train and evaluate, epoch by epoch; `report(metrics, checkpoint_dir)` after each epoch.

    `epoch_data(epoch)` returns a `tf.data.Dataset` of (image, label) batches for this worker. The
    checkpoint holds the weights and the epoch, so a restarted run continues where it stopped.
    """
    from pipelines.models import build  # first: it puts torch before TensorFlow where that matters

    import tf_keras as keras

    started_at = started_at or time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    gpu = _use_gpu()
    if cfg.mixed_precision == "on" or (cfg.mixed_precision == "auto" and gpu):
        keras.mixed_precision.set_global_policy("mixed_float16")  # compile() then adds loss scaling
    else:
        keras.mixed_precision.set_global_policy("float32")
    with strategy.scope():
        model = build(cfg.model, n_classes=cfg.n_classes, size=cfg.size, weights=cfg.weights,
                      finetune_depth=cfg.finetune_depth, preprocessing=cfg.preprocessing, augment=cfg.augment,
                      weights_dir=cfg.weights_dir)
        model.compile(optimizer=_optimizer(cfg), loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    start, best, since_best = 0, None, 0
    if restore_dir:
        model.load_weights(str(Path(restore_dir) / WEIGHTS_FILE))
        state = json.loads((Path(restore_dir) / STATE_FILE).read_text())
        start, best, since_best = state["epoch"] + 1, state["best"], state["since_best"]
    sign = -1.0 if cfg.monitor == "loss" else 1.0
    val_x, val_y = val
    for epoch in range(start, cfg.epochs):
        t_fit = time.perf_counter()
        history = model.fit(epoch_data(epoch), epochs=1, verbose=0, class_weight=class_weight)
        t_eval = time.perf_counter()
        probs = _predict(model, val_x, max(1, cfg.batch_size))
        metrics = {f"val_{k}": v for k, v in classification_metrics(val_y, probs).items()}
        metrics.update({"epoch": epoch, "train_loss": float(history.history["loss"][-1]),
                        "train_accuracy": float(history.history["accuracy"][-1]),
                        # where the time goes (benchmarks/trial_overhead.py): Keras fit, validation, since the loop began
                        "time_fit_s": t_eval - t_fit, "time_eval_s": time.perf_counter() - t_eval,
                        "time_since_start_s": time.perf_counter() - started_at})
        score = sign * metrics[f"val_{cfg.monitor}"]
        if best is None or score > best:
            best, since_best = score, 0
        else:
            since_best += 1
        stop = cfg.patience > 0 and since_best >= cfg.patience
        metrics["stopped_early"] = bool(stop and epoch < cfg.epochs - 1)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if is_chief:
                model.save_weights(str(Path(tmp) / WEIGHTS_FILE))
                (Path(tmp) / STATE_FILE).write_text(json.dumps({"epoch": epoch, "best": best, "since_best": since_best}))
                checkpoint = tmp
            report(metrics, checkpoint)
        if stop:
            break
    return model


def _numpy_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> Callable[[int], Any]:
    import tensorflow as tf

    def epoch_data(epoch: int):
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        return tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(batch_size)

    return epoch_data


def fit_local(
    cfg: TrainConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    checkpoint_dir: str | None = None,
    restore_dir: str | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """The same loop in this process, one replica: for notebooks and debugging. Returns (model, history)."""
    import pipelines.models  # noqa: F401  (before TensorFlow: it puts torch first where that matters)
    import tensorflow as tf

    x, y = train
    if cfg.imbalance == "oversample":
        keep = oversample(y, cfg.seed)
        x, y = x[keep], y[keep]
    weights = class_weights(y, cfg.n_classes) if cfg.imbalance == "class_weight" else None
    history: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], checkpoint: str | None) -> None:
        history.append(metrics)
        if checkpoint and checkpoint_dir:
            target = Path(checkpoint_dir) / f"epoch-{metrics['epoch']:04d}"
            target.mkdir(parents=True, exist_ok=True)
            for f in Path(checkpoint).iterdir():
                (target / f.name).write_bytes(f.read_bytes())

    tf.config.experimental.enable_op_determinism()
    model = run(cfg, tf.distribute.get_strategy(), _numpy_batches(x, y, cfg.batch_size, cfg.seed), val, report,
                restore_dir, weights)
    return model, history


# ---------------------------------------------------------------- under Ray Train


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs (TensorflowTrainer sets TF_CONFIG for the strategy)."""
    started_at = time.perf_counter()
    import ray.train
    import tensorflow as tf

    cfg = TrainConfig.model_validate(config["train"])
    ctx = ray.train.get_context()
    gpu = _use_gpu()
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

    def report(metrics: dict[str, Any], checkpoint: str | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint) if checkpoint else None)

    # a restarted worker group gets the run's latest checkpoint; a new run can be told where to start
    restore = ray.train.get_checkpoint() or config.get("resume_from")
    if restore:
        with restore.as_directory() as d:
            tmp = tempfile.mkdtemp()
            for f in Path(d).iterdir():
                (Path(tmp) / f.name).write_bytes(f.read_bytes())
        restore_dir = tmp
    else:
        restore_dir = None
    tf.config.experimental.enable_op_determinism()
    run(cfg, strategy, epoch_data, val, report, restore_dir, config.get("class_weight"), is_chief=ctx.get_world_rank() == 0,
        started_at=started_at)


def _rows(shard) -> Iterator[dict[str, np.ndarray]]:
    yield from shard.iter_batches(batch_size=256, batch_format="numpy")


def oversample_dataset(ds, labels: np.ndarray, n_classes: int):
    """Repeat each class's rows a whole number of times, so classes come out about equally often."""
    from ray.data.expressions import col

    counts = np.bincount(labels, minlength=n_classes)
    parts = []
    for c in range(n_classes):
        if counts[c] == 0:
            continue
        part = ds.filter(expr=col("label") == c)
        parts.extend([part] * max(1, int(round(counts.max() / counts[c]))))
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


EPOCHS_DIR = "epochs"
# What a Ray Data task that decodes a block of PNGs asks for. Decoding small PNGs is light; at Ray Data's
# default of 1 CPU, trials whose workers held the machine's CPUs (four smoke trials at 0.5 CPU on 2 cores)
# could not decode their next batch, and the cores stood about 80 % idle.
DECODE_CPUS = 0.25


def epoch_log_callback(store, name: str):
    """A Ray Train callback (it runs in the controller) that keeps every epoch's metrics beside the run:
    `<storage>/<name>/epochs/<epoch>.json`. Ray's Result keeps only the metrics of kept checkpoints.
    `store` is a `pipelines.storage.Store`; it travels to the controller with its credentials."""
    from ray.train import UserCallback

    class EpochLog(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            rank0 = metrics[0]
            store.write_bytes(json.dumps(rank0).encode(), name, EPOCHS_DIR, f"{int(rank0['epoch']):04d}.json")

    return EpochLog()


def read_epochs(storage_path: str, name: str, endpoint: str | None = None) -> list[dict[str, Any]]:
    """The per-epoch metrics a run logged, in epoch order."""
    from pipelines.storage import open_store

    store = open_store(storage_path, endpoint)
    return [json.loads(store.read_bytes(name, EPOCHS_DIR, f)) for f in store.list(name, EPOCHS_DIR)]


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
    max_failures: int = 0,
    resume_from=None,
    endpoint: str | None = None,
    callbacks: list | None = None,
    labels: np.ndarray | None = None,
):
    """A `TensorflowTrainer` for one run: shards decoded once per epoch on the fly, the val split unsplit.

    `storage_path` is a folder or s3:// URI; the run lives at `<storage_path>/<name>`. `callbacks` are
    more Ray Train callbacks (Tune's `TuneReportCallback` when the run is a trial). `labels` (the train
    split's, if the caller knows them) saves a pass over the data for class weights."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig

    from pipelines.storage import open_store
    from pipelines.tf_backend import KerasTrainer

    store = open_store(storage_path, endpoint)

    size = cfg.size
    if size is None:  # the registry imports TensorFlow: a trial, which always knows its size, never needs it
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
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        datasets={"train": train_ds.map_batches(decode_batch, **decode),
                  "val": val_ds.map_batches(decode_batch, **decode)},
        # one worker reads the whole train split: no split, so no coordinator actor to start
        dataset_config=DataConfig(datasets_to_split=["train"] if workers > 1 else []),
        run_config=RunConfig(
            storage_path=store.root, storage_filesystem=store.fs, name=name,
            checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=f"val_{cfg.monitor}",
                                               checkpoint_score_order="min" if cfg.monitor == "loss" else "max"),
            failure_config=FailureConfig(max_failures=max_failures),
            callbacks=[epoch_log_callback(store, name), *(callbacks or [])],
        ),
    )
