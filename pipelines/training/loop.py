"""The Keras training loop: one function every runner uses (a Ray Train worker, a Tune trial, this process).

Written against tf-keras (TF_USE_LEGACY_KERAS=1, `pipelines.bootstrap`) because Keras 3 with
MultiWorkerMirroredStrategy fails under Ray Train (docs/stack.md). The global batch is split
across workers; every worker scores the whole validation split, so early stopping sees the same numbers
everywhere.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import TrainConfig
from pipelines.training import checkpoint, determinism, devices, model_cache
from pipelines.training.data import class_weights, oversample
from pipelines.training.early_stopping import Patience
from pipelines.training.metrics import classification_metrics

Report = Callable[[dict[str, Any], "str | None"], None]

# Images per call when scoring (validation, the test split, the explanations): with no gradients to keep, a batch
# takes a fraction of a training batch's memory, and fewer, larger calls score faster.
INFERENCE_BATCH = 64


def optimizer_choice(cfg: TrainConfig) -> tuple[str, float]:
    """The optimizer's name and learning rate: the run's, else the reference code's for the network."""
    from pipelines.models import get_spec

    spec = get_spec(cfg.model)
    return cfg.optimizer or spec.optimizer, cfg.learning_rate or spec.learning_rate


def optimizer(cfg: TrainConfig):
    import tf_keras as keras

    name, lr = optimizer_choice(cfg)
    return {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}[name](learning_rate=lr)


def predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Direct calls, not `predict`: each worker scores the whole set with no collective ops. A kept model runs its
    kept traced pass (`model_cache.inference`)."""
    import tensorflow as tf

    forward = model_cache.inference(model)
    if forward is None:
        forward = lambda batch: model(batch, training=False)  # noqa: E731
    # uint8 images are cast where the model runs (eager ops go to the GPU when there is one)
    outs = [forward(tf.cast(x[i : i + batch_size], tf.float32)).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 2), np.float32)


def compile_model(cfg: TrainConfig, strategy, reuse: bool = False):
    """The model of `cfg`, built and compiled inside `strategy`'s scope (or with `reuse`, this process's kept one
    reset: `model_cache`)."""
    import tf_keras as keras

    from pipelines.models.build import build

    def compile(model) -> None:
        model.compile(optimizer=optimizer(cfg), loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      steps_per_execution=cfg.steps_per_execution)

    with strategy.scope():
        return model_cache.compiled_model(cfg, *optimizer_choice(cfg), lambda: build(
            cfg.model, n_classes=cfg.n_classes, size=cfg.size, weights=cfg.weights, finetune_depth=cfg.finetune_depth,
            preprocessing=cfg.preprocessing, augment=cfg.augment, weights_dir=cfg.weights_dir), compile, reuse)


def run(
    cfg: TrainConfig,
    strategy,
    epoch_data: Callable[[int], Any],
    val: tuple[np.ndarray, np.ndarray] | None,
    report: Report,
    restore_dir: str | None,
    class_weight: dict[int, float] | None,
    is_chief: bool = True,
    started_at: float | None = None,
    reuse_model: bool = False,
):
    """Train and evaluate, epoch by epoch; `report(metrics, checkpoint_dir)` after each epoch, with a checkpoint
    (else None) when the epoch is the best so far, the last, or `cfg.checkpoint_every_s` after the last one.

    `epoch_data(epoch)` returns a `tf.data.Dataset` of (image, label) batches for this worker. Each
    checkpoint holds the weights and the state (`pipelines.training.checkpoint`), so a restarted run
    continues from its latest checkpoint. Without `val` (a refit on all training data) every epoch counts as the
    best so far and nothing stops early. With `reuse_model` a process that trains one trial after another builds
    each network once (`pipelines.training.model_cache`).
    """
    import tf_keras as keras

    started_at = started_at or time.perf_counter()
    began_at = time.time() - (time.perf_counter() - started_at)  # the same moment by the wall clock
    gpus = devices.require_given_gpus(f"A run of {cfg.model}", cfg.allow_cpu_fallback)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision == "on" or (cfg.mixed_precision == "auto" and gpus):
        keras.mixed_precision.set_global_policy("mixed_float16")  # compile() then adds loss scaling
    else:
        keras.mixed_precision.set_global_policy("float32")
    model = compile_model(cfg, strategy, reuse_model)
    patience = Patience(cfg.monitor, cfg.patience if val is not None else 0)
    start = 0
    if restore_dir:
        model.load_weights(str(Path(restore_dir) / checkpoint.WEIGHTS_FILE))
        state = checkpoint.read_state(restore_dir)
        start, patience = state["epoch"] + 1, Patience.restore(cfg.monitor, patience.patience, state)
    last_saved = time.perf_counter()
    for epoch in range(start, cfg.epochs if not patience.stop else start):
        t_fit = time.perf_counter()
        history = model.fit(epoch_data(epoch), epochs=1, verbose=0, class_weight=class_weight)
        t_eval = time.perf_counter()
        metrics: dict[str, Any] = {}
        if val is not None:
            probs = predict(model, val[0], max(cfg.batch_size, INFERENCE_BATCH))
            metrics = {f"val_{k}": v for k, v in classification_metrics(val[1], probs).items()}
        improved = patience.update(epoch, metrics) if val is not None else _always(patience, epoch)
        metrics.update({"epoch": epoch, "epochs_done": epoch + 1, "train_loss": float(history.history["loss"][-1]),
                        "train_accuracy": float(history.history["accuracy"][-1]),
                        "best_epoch": patience.best_epoch, checkpoint.RANK: checkpoint.rank(epoch, improved),
                        # where the time goes (benchmarks/trial_overhead.py): Keras fit, validation, since the loop
                        # began, and when it began (wall clock)
                        "time_fit_s": t_eval - t_fit, "time_eval_s": time.perf_counter() - t_eval,
                        "time_since_start_s": time.perf_counter() - started_at,
                        "loop_began_at": began_at})
        metrics["stopped_early"] = bool(patience.stop and epoch < cfg.epochs - 1)
        # the weights are written when they may be chosen (the best so far), when the run ends, and else on a
        # schedule that bounds what a kill can cost: a restarted run continues from the latest written epoch
        due = (improved or patience.stop or epoch == cfg.epochs - 1
               or time.perf_counter() - last_saved >= cfg.checkpoint_every_s)
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if is_chief and due:
                checkpoint.save(model, tmp, epoch, patience.state())
                saved, last_saved = tmp, time.perf_counter()
            metrics["checkpoint_bytes"] = sum(f.stat().st_size for f in Path(tmp).iterdir()) if saved else 0
            report(metrics, saved)
        if patience.stop:
            break
    return model


def _always(patience: Patience, epoch: int) -> bool:
    """Without validation the latest epoch is the one kept."""
    patience.best_epoch = epoch
    return True


def numpy_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                  rows: np.ndarray | None = None) -> Callable[[int], Any]:
    """Arrays in memory as the loop's `epoch_data`: the `rows` of `x` and `y` (all of them by default, repeats
    allowed) in a new seeded order every epoch, the same after a restart.

    The images become one tensor in host memory once per run; an epoch shuffles indices and gathers each batch from
    that tensor while the previous batch trains, so no epoch copies the images. uint8 images stay uint8 up to the
    model, whose input layer casts them on the device."""
    import tensorflow as tf

    rows = np.arange(len(x)) if rows is None else np.asarray(rows)
    with tf.device("/CPU:0"):  # where tf.data runs; a GPU keeps its memory for the network
        images, labels = tf.constant(x), tf.constant(y)

    def gather(idx):
        return tf.gather(images, idx), tf.gather(labels, idx)

    def epoch_data(epoch: int):
        order = rows[np.random.default_rng([seed, epoch]).permutation(len(rows))]
        return (tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(gather)
                .prefetch(tf.data.AUTOTUNE))

    return epoch_data


def fit_arrays(
    cfg: TrainConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    report: Report,
    restore_dir: str | None = None,
    reuse_model: bool = False,
):
    """The loop on arrays in this process, one replica: what a one-worker trial, a refit and a notebook run."""
    from pipelines.bootstrap import tensorflow

    tf = tensorflow()
    x, y = train
    rows = oversample(y, cfg.seed) if cfg.imbalance == "oversample" else None
    weights = class_weights(y, cfg.n_classes) if cfg.imbalance == "class_weight" else None
    determinism.apply(cfg.deterministic)
    return run(cfg, tf.distribute.get_strategy(), numpy_batches(x, y, cfg.batch_size, cfg.seed, rows), val, report,
               restore_dir, weights, reuse_model=reuse_model)


def fit_local(
    cfg: TrainConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    checkpoint_dir: str | None = None,
    restore_dir: str | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """`fit_arrays` for notebooks and debugging: every epoch's checkpoint kept under `checkpoint_dir/epoch-NNNN`.
    Returns (model, history)."""
    history: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], saved: str | None) -> None:
        history.append(metrics)
        if saved and checkpoint_dir:
            target = Path(checkpoint_dir) / f"epoch-{metrics['epoch']:04d}"
            target.mkdir(parents=True, exist_ok=True)
            for f in Path(saved).iterdir():
                (target / f.name).write_bytes(f.read_bytes())

    model = fit_arrays(cfg, train, val, report, restore_dir)
    return model, history
