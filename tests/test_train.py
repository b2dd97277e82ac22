"""Training: the in-process loop repeats exactly and learns; Ray Train with 2 workers learns and resumes."""

import gc
import json
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import train_config
from pipelines.phantom.synth import SCALES, synth
from pipelines.shards.prepare import prepare
from pipelines.shards.read import open_dataset, read_table
from pipelines.training.checkpoint import STATE_FILE
from pipelines.training.data import class_weights, decode_images, oversample
from pipelines.training.loop import fit_local
from pipelines.training.ray_train import make_trainer, read_epochs

from conftest import tiny_prepare_config

SIZE = 40
EPOCHS = 12
TWO_EPOCHS = 3  # the two-worker run
# The tiny phantom (144 faces, 34 for validation) is too small for a network trained from scratch to
# learn the expression reliably; this one (382 faces, about 40 s to render) is the smallest that does.
LEARN = SCALES["learn"]


def is_val(sha: str) -> bool:
    """A fixed 30 % of images, chosen by their content hash: the same split on every path."""
    return int(sha[:8], 16) % 10 < 3


@pytest.fixture(scope="session")
def learn_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    synth(root / "phantom", LEARN, seed=1)
    out = root / "shards"
    prepare(tiny_prepare_config(root / "phantom", str(out), frames_per_subject_class=0,
                                preprocess={"size": SIZE, "background": "grabcut"}), log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def arrays(learn_shards):
    t = read_table(str(learn_shards), columns=["image", "label", "source_sha256"])
    val = np.array([is_val(s) for s in t.column("source_sha256").to_pylist()])
    x = decode_images(t.column("image").to_pylist(), SIZE)
    y = np.asarray(t.column("label").to_pylist(), dtype=np.int64)
    return (x[~val], y[~val]), (x[val], y[val])


def chance(y: np.ndarray) -> float:
    return float(np.bincount(y).max() / len(y))


def above_chance(acc: float, y_val: np.ndarray) -> bool:
    """Clearly above chance: beyond the majority rate plus two binomial standard errors of it."""
    p = chance(y_val)
    return acc > p + 2 * np.sqrt(p * (1 - p) / len(y_val))


CFG = {"model": "weinet", "size": SIZE, "epochs": EPOCHS, "batch_size": 8, "learning_rate": 3e-4,
       "augment": False, "patience": 0, "seed": 0}


def test_class_weights_and_oversampling():
    y = np.array([0] * 8 + [1] * 2)
    w = class_weights(y, 2)
    assert w[1] == 4 * w[0] and np.isclose(w[0] * 8 + w[1] * 2, 10)
    idx = oversample(y, seed=0)
    assert np.bincount(y[idx]).tolist() == [8, 8]


def test_local_loop_repeats_exactly(arrays, tmp_path):
    # a part of the data: that a seeded run repeats does not depend on how much it reads
    train, val = [(x[:72], y[:72]) for x, y in arrays]
    cfg = train_config({**CFG, "epochs": 3, "checkpoint_every_s": 0})  # every epoch's checkpoint
    _, h1 = fit_local(cfg, train, val, checkpoint_dir=str(tmp_path / "ck"))
    _, h2 = fit_local(cfg, train, val)
    assert [r["val_loss"] for r in h1] == [r["val_loss"] for r in h2]  # seeded CPU runs repeat exactly
    assert len(h1) == 3 and {"val_f1_pain", "val_precision_no_pain", "val_recall_macro"} <= set(h1[-1])
    # continue from the epoch-1 checkpoint: the run goes on with epoch 2
    _, h3 = fit_local(cfg, train, val, restore_dir=str(tmp_path / "ck" / "epoch-0001"))
    assert [r["epoch"] for r in h3] == [2]


def test_several_steps_per_execution_train_the_same_weights(arrays):
    """`steps_per_execution` runs several training steps in one call into TensorFlow: the same steps, in the same
    order, so the same validation losses as one step per call (a batch count that it does not divide included)."""
    train, val = arrays
    small_train, small_val = (train[0][:72], train[1][:72]), (val[0][:32], val[1][:32])
    one = fit_local(train_config({**CFG, "epochs": 2}), small_train, small_val)[1]
    four = fit_local(train_config({**CFG, "epochs": 2, "steps_per_execution": 4}), small_train, small_val)[1]
    assert len(one) == len(four) == 2
    assert np.allclose([r["val_loss"] for r in one], [r["val_loss"] for r in four], rtol=1e-5, atol=1e-6)
    assert np.allclose([r["train_loss"] for r in one], [r["train_loss"] for r in four], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("every_s", [0, 3600])
def test_weights_are_written_when_they_may_be_chosen_and_on_a_schedule(arrays, tmp_path, every_s):
    """With a long schedule, a run writes its weights only at the epochs that improved on its best and at its
    last epoch (what can be chosen, and where a finished run is seen to be finished); with 0, at every epoch.
    Each epoch's record says how many bytes it wrote."""
    train, val = arrays
    cfg = train_config({**CFG, "epochs": 6, "checkpoint_every_s": every_s})
    _, history = fit_local(cfg, (train[0][:64], train[1][:64]), (val[0][:32], val[1][:32]),
                           checkpoint_dir=str(tmp_path / "ck"))
    written = sorted(int(d.name.split("-")[1]) for d in (tmp_path / "ck").iterdir())
    improved = [r["epoch"] for r in history if r["best_epoch"] == r["epoch"]]
    expected = list(range(6)) if every_s == 0 else sorted({*improved, 5})
    assert written == expected, (written, history)
    assert [r["epoch"] for r in history if r["checkpoint_bytes"] > 0] == expected
    if every_s:
        assert len(written) < 6, "every epoch improved: the test shows nothing; change its seed or sizes"


def test_an_epochs_batches_are_gathered_in_a_seeded_order_without_a_copy_of_the_images():
    """Each epoch's order depends on the seed and the epoch alone (so a restarted run sees what an unbroken one
    would), repeated rows (oversampling) are gathered from the one tensor, and uint8 images stay uint8."""
    from pipelines.training.loop import numpy_batches

    x = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    y = np.arange(10) % 2
    rows = np.array([0, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9])

    def seen(data) -> tuple[np.ndarray, np.ndarray]:
        batches = list(data.as_numpy_iterator())
        assert all(b[0].dtype == np.uint8 and len(b[0]) <= 4 for b in batches)
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    epochs = numpy_batches(x, y, 4, seed=7, rows=rows)
    for epoch in (0, 1, 5):
        order = rows[np.random.default_rng([7, epoch]).permutation(len(rows))]
        images, labels = seen(epochs(epoch))
        assert (images == x[order]).all() and (labels == y[order]).all()
        again = seen(numpy_batches(x, y, 4, seed=7, rows=rows)(epoch))  # a restarted run
        assert (again[0] == images).all()
    assert not (seen(epochs(0))[0] == seen(epochs(1))[0]).all()


def test_uint8_images_train_exactly_as_float_images(arrays):
    """The fold cache keeps uint8 images (a quarter of float32's memory) and the model casts them: training and
    validation give the same numbers as the float32 images they came from, oversampled too."""
    train, val = arrays
    cfg = train_config({**CFG, "epochs": 2, "imbalance": "oversample"})
    small = (train[0][:48], train[1][:48]), (val[0][:24], val[1][:24])
    _, floats = fit_local(cfg, *small)
    _, uint8s = fit_local(cfg, *[(x.astype(np.uint8), y) for x, y in small])
    assert [r["val_loss"] for r in floats] == [r["val_loss"] for r in uint8s]
    assert [r["train_loss"] for r in floats] == [r["train_loss"] for r in uint8s]


@pytest.mark.parametrize("network", [
    {"model": "weinet", "augment": True},  # augmentation's generators
    {"model": "weinet", "augment": False},
    {"model": "songnet", "augment": False},  # dropout's generators, an RMSprop optimizer's slots
    {"model": "weinet", "augment": False, "mixed_precision": "on"},  # the loss scale the optimizer keeps on a GPU
    {"model": "resnet50", "augment": True, "weights": "imagenet", "finetune_depth": 0.5},  # as the paper searches it
], ids=["weinet-augment", "weinet", "songnet-dropout", "weinet-mixed-precision", "resnet50-half-frozen"])
def test_a_kept_model_trains_as_a_fresh_build_would(arrays, network, standin_weights):
    """An inline trial's actor keeps each network, compiled, for the search's next trial (`model_cache`): reset,
    it must train exactly as a fresh build, without tracing its train step again: with augmentation's and
    dropout's generators, an optimizer's slots and loss scale, and a pretrained backbone half frozen (its batch
    normalisation's statistics among the weights reset)."""
    from pipelines.training import keras_state, model_cache
    from pipelines.training.loop import fit_arrays

    train, val = arrays
    # two batches a split: what a kept model must reproduce does not grow with the data
    small = (train[0][:16], train[1][:16]), (val[0][:16], val[1][:16])

    def trial(lr: float, reuse: bool, **other) -> tuple[list[float], object]:
        history: list[float] = []
        before = keras_state.registered_gradients()
        cfg = train_config({**CFG, **network, "weights_dir": str(standin_weights), "epochs": 2, "learning_rate": lr,
                            **other})
        try:
            built = fit_arrays(cfg, *small, lambda m, _: history.append(m["val_loss"]), reuse_model=reuse)
        finally:
            keras_state.release(before)  # as the inline runner does after each trial
        return history, built

    def loss_scale(model) -> float | None:
        return float(model.optimizer.loss_scale) if hasattr(model.optimizer, "loss_scale") else None

    model_cache.forget()
    fresh, fresh_model = trial(1e-3, reuse=False)
    _, first = trial(3e-4, reuse=True)  # kept, after a trial of another learning rate
    step, traces = first.train_function, first.train_function.experimental_get_tracing_count()
    if loss_scale(first) is not None:  # as a GPU trial whose gradients overflowed leaves it (tf-keras internals)
        first.optimizer._loss_scale._current_loss_scale.assign(1.0)
    again, second = trial(1e-3, reuse=True)
    assert second is first and again == fresh and loss_scale(second) == loss_scale(fresh_model)
    assert second.train_function is step and step.experimental_get_tracing_count() == traces  # not traced again
    assert gc.get_freeze_count() > 0  # what outlives a trial is out of the collector's way (keras_state.release)
    replaced = weakref.ref(first)
    del first, second, step
    _, other = trial(1e-3, reuse=True, model="alexnet", weights="none", finetune_depth=0.0)  # another network
    assert model_cache._KEPT[0].model is other
    assert replaced() is None  # the replaced network was handed back to the collector, and collected
    model_cache.forget()
    assert gc.get_freeze_count() == 0


def test_a_kept_models_traced_pass_scores_as_direct_calls(arrays):
    """A kept model scores through its traced pass, traced once for all batch sizes (the last batch is shorter):
    the same probabilities as calling the model directly, one row per image."""
    from pipelines.bootstrap import tensorflow
    from pipelines.training import model_cache
    from pipelines.training.loop import compile_model, predict

    x = arrays[1][0][:13]
    model_cache.forget()
    model = compile_model(train_config(CFG), tensorflow().distribute.get_strategy(), reuse=True)
    assert model_cache.inference(model) is not None
    direct = model(x, training=False).numpy()
    assert predict(model, x, 8).shape == (13, 2)
    np.testing.assert_allclose(predict(model, x, 8), direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict(model, x, 5), direct, rtol=1e-5, atol=1e-6)
    assert model_cache.inference(model).experimental_get_tracing_count() == 1
    model_cache.forget()
    assert model_cache.inference(model) is None  # a model not kept is called directly


def test_validation_is_scored_in_inference_batches(arrays, monkeypatch):
    """Each epoch scores the validation split in batches of `INFERENCE_BATCH` (or the training batch, if larger):
    scoring keeps no gradients, so larger batches fit and fewer calls score faster."""
    from pipelines.training import loop

    train, val = arrays
    sizes = []
    scored = loop.predict
    monkeypatch.setattr(loop, "predict", lambda model, x, batch: sizes.append(batch) or scored(model, x, batch))
    fit_local(train_config({**CFG, "epochs": 1}), (train[0][:16], train[1][:16]), val)
    fit_local(train_config({**CFG, "epochs": 1, "batch_size": 2 * loop.INFERENCE_BATCH}), (train[0][:16], train[1][:16]), val)
    assert sizes == [loop.INFERENCE_BATCH, 2 * loop.INFERENCE_BATCH]


def test_local_loop_learns(arrays):
    train, val = arrays
    _, history = fit_local(train_config(CFG), train, val)
    best = max(r["val_accuracy"] for r in history[-3:])
    assert above_chance(best, val[1]), (best, chance(val[1]))


def test_early_stopping(arrays):
    train, val = [(x[:72], y[:72]) for x, y in arrays]
    cfg = train_config({**CFG, "epochs": 30, "patience": 1, "learning_rate": 1e-7})
    _, history = fit_local(cfg, train, val)
    assert len(history) < 30 and history[-1]["stopped_early"]


def test_two_workers_under_ray_train(ray_local, learn_shards, arrays, tmp_path):
    """TensorflowTrainer, 2 CPU workers, MultiWorkerMirroredStrategy over tf-keras, fed from the Parquet shards.

    Three epochs: enough to see both workers train one model (the training loss falls) and a run continue
    from a checkpoint. That the loop learns the phantom's expression beyond chance is checked on the same
    data in-process (test_local_loop_learns, 12 epochs), where it costs a tenth of the time."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import test modules
    ds = open_dataset(str(learn_shards))
    # the split is made once (materialized): every epoch then reads its blocks, not the files again
    train_ds = ds.filter(lambda r: not is_val(r["source_sha256"])).materialize()
    val_ds = ds.filter(lambda r: is_val(r["source_sha256"])).materialize()
    cfg = train_config({**CFG, "epochs": TWO_EPOCHS})
    trainer = make_trainer(cfg, train_ds, val_ds, str(tmp_path), "two", workers=2, cpus_per_worker=0.5)
    result = trainer.fit()
    history = read_epochs(str(tmp_path), "two")
    assert [h["epoch"] for h in history] == list(range(TWO_EPOCHS))
    assert {"val_f1_pain", "val_recall_no_pain", "val_f1_macro", "train_loss"} <= set(history[-1])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # every worker scores the whole validation split: each epoch's accuracy is a count of its images over all of them
    n_val = len(arrays[1][1])
    assert all(abs(h["val_accuracy"] * n_val - round(h["val_accuracy"] * n_val)) < 1e-4 for h in history), history
    assert result.checkpoint is not None
    # a new run continues from that checkpoint instead of starting over
    more = make_trainer(cfg.model_copy(update={"epochs": TWO_EPOCHS + 1}), train_ds, val_ds, str(tmp_path), "two-continued",
                        workers=2, cpus_per_worker=0.5, resume_from=result.checkpoint)
    more.fit()
    with result.checkpoint.as_directory() as d:
        saved = json.loads((Path(d) / STATE_FILE).read_text())["epoch"]
    assert [h["epoch"] for h in read_epochs(str(tmp_path), "two-continued")] == list(range(saved + 1, TWO_EPOCHS + 1))


def test_tensorflows_thread_pools_follow_the_cpus_ray_gave(ray_local):
    """A trial given half a CPU runs TensorFlow with one thread per pool, one given two CPUs with two: not one
    per core of the node, which trials sharing the node would oversubscribe."""
    import ray

    @ray.remote(max_calls=1)
    def pools() -> tuple[int, int]:
        from pipelines.bootstrap import tensorflow

        tf = tensorflow()
        tf.constant(1.0) + 1  # TensorFlow runs, with its pools as set
        return (tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads())

    def fresh(cpus: float) -> tuple[int, int]:
        # a process of its own (a runtime env no other task has): a pool's size is fixed once TensorFlow runs, and
        # Ray gives a task an idle worker that earlier tasks may have run TensorFlow in
        env = {"env_vars": {"PAINSEARCH_TEST_WORKER": f"threads-{cpus}"}}
        return ray.get(pools.options(num_cpus=cpus, runtime_env=env).remote())

    assert fresh(0.5) == (1, 1)
    assert fresh(2) == (2, 2)


def test_oversampling_a_ray_dataset(ray_local, tiny_shards):
    from pipelines.training.data import oversample_dataset

    ds = open_dataset(str(tiny_shards)).materialize()
    labels = np.asarray(ds.select_columns(["label"]).to_pandas()["label"], dtype=int)
    imbalanced = ds.filter(expr="label == 0").union(ds.filter(expr="label == 1").limit(10))
    y = np.asarray(imbalanced.select_columns(["label"]).to_pandas()["label"], dtype=int)
    balanced = oversample_dataset(imbalanced, y, 2)
    counts = np.bincount(np.asarray(balanced.select_columns(["label"]).to_pandas()["label"], dtype=int))
    assert np.bincount(y)[1] == 10 and counts[1] == 10 * round(np.bincount(y)[0] / 10)
    assert abs(int(counts[0]) - int(counts[1])) <= 5
    assert len(labels) == read_table(str(tiny_shards)).num_rows


def test_a_run_whose_owner_is_killed_gives_its_cpus_back(ray_local, tmp_path):
    """What happens when Tune stops a trial early: the trial's process, which owns the Ray Train run, is killed.
    Ray Train's placement-group cleaner then frees the run's resources, through the state API of the local
    Ray's dashboard (cluster/local.py); without it the CPUs stayed held until Ray shut down. In the suite the
    head cluster of test_study runs beside this one, and the state API must still find the right cluster."""
    import time

    import ray

    from pipelines.training.tf_backend import KerasConfig

    @ray.remote(num_cpus=0)
    class Owner:
        def run(self, storage: str) -> None:
            from ray.train import DataConfig, RunConfig, ScalingConfig
            from ray.train.tensorflow import TensorflowTrainer

            def sleep_loop(config):
                import pathlib
                import time

                pathlib.Path(config["marker"]).write_text("training")
                time.sleep(120)

            TensorflowTrainer(sleep_loop, train_loop_config={"marker": f"{storage}/started"}, tensorflow_config=KerasConfig(),
                              scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
                              dataset_config=DataConfig(datasets_to_split=[]),
                              run_config=RunConfig(storage_path=storage, name="owned")).fit()

    free = ray.cluster_resources()["CPU"]
    deadline = time.time() + 60
    while ray.available_resources().get("CPU", 0) < free:  # what earlier tests ran has ended
        assert time.time() < deadline, "the cluster never became idle"
        time.sleep(0.5)
    owner = Owner.remote()
    owner.run.remote(str(tmp_path))
    deadline = time.time() + 60
    while not (tmp_path / "started").exists():  # the worker is training, as when ASHA stops a trial
        assert time.time() < deadline, "the run never started"
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) <= free - 0.5
    ray.kill(owner)
    deadline = time.time() + 30
    while ray.available_resources().get("CPU", 0) < free:
        assert time.time() < deadline, "the killed run still holds its CPUs"
        time.sleep(0.5)


def test_the_best_epochs_checkpoint_is_chosen_not_the_latest():
    """Ray Train keeps the latest checkpoint besides the best-ranked one and names them by time; the test split
    is scored with the checkpoint of the epoch that ranked the trial, never with the newest folder."""
    from pipelines.training.checkpoint import best_of

    states = {"checkpoint_2026-11-27_03-00-01.000000": {"epoch": 1, "best_epoch": 1},
              "checkpoint_2026-11-27_03-00-09.000000": {"epoch": 3, "best_epoch": 1}}
    assert best_of(states) == ("checkpoint_2026-11-27_03-00-01.000000", 1)
    assert sorted(states)[-1] != best_of(states)[0]
    with pytest.raises(ValueError, match="best epoch 2"):
        best_of({"checkpoint_a": {"epoch": 3, "best_epoch": 2}})


def test_an_inline_run_keeps_its_best_and_latest_checkpoints(tmp_path):
    """What the inline runner keeps of a run: the best-ranked epoch and the latest (Ray Train's policy)."""
    from pipelines.storage import open_store
    from pipelines.training.checkpoint import RANK, best_of, rank
    from pipelines.training.ray_train import write_epoch
    from search.runners import CheckpointKeeper, kept_states, latest_checkpoint

    store = open_store(str(tmp_path / "store"))
    keeper = CheckpointKeeper(store, "run")
    best = -1
    for epoch, improved in enumerate([True, True, False, False]):
        best = epoch if improved else best
        saved = tmp_path / f"e{epoch}"
        saved.mkdir()
        (saved / "model.h5").write_bytes(b"weights of epoch %d" % epoch)
        (saved / "state.json").write_text(json.dumps({"epoch": epoch, "best_epoch": best}))
        write_epoch(store, "run", {"epoch": epoch})
        keeper.add(str(saved), epoch, {RANK: rank(epoch, improved)}[RANK])
    states = kept_states(store, "run")
    assert sorted(s["epoch"] for s in states.values()) == [1, 3]
    folder, epoch = best_of(states)
    assert epoch == 1 and store.read_bytes("run", folder, "model.h5") == b"weights of epoch 1"
    assert states[latest_checkpoint(store, "run")]["epoch"] == 3
    assert CheckpointKeeper(store, "run").kept == keeper.kept  # a restarted trial knows what it kept


def test_a_checkpoint_is_moved_into_the_store_not_copied(tmp_path):
    """A checkpoint's files reach a local store by a rename (the same file, not a second write of its bytes); from
    another filesystem (/dev/shm's tmpfs here) they are copied whole, and the saved file is gone either way."""
    import os
    import tempfile

    from pipelines.storage import open_store
    from search.runners import CheckpointKeeper, checkpoint_name

    store = open_store(str(tmp_path / "store"))
    keeper = CheckpointKeeper(store, "run")
    saved = tmp_path / "e0"
    saved.mkdir()
    (saved / "model.h5").write_bytes(b"w" * 100_000)
    (saved / "state.json").write_text(json.dumps({"epoch": 0, "best_epoch": 0}))
    inode = os.stat(saved / "model.h5").st_ino
    keeper.add(str(saved), 0, 0)
    assert os.stat(store.path("run", checkpoint_name(0), "model.h5")).st_ino == inode
    assert not list(saved.iterdir())
    if os.path.isdir("/dev/shm") and os.stat("/dev/shm").st_dev != os.stat(tmp_path).st_dev:
        with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
            (Path(other) / "model.h5").write_bytes(b"v" * 100_000)
            store.move_file(Path(other) / "model.h5", "run", "elsewhere", "model.h5")
            assert not (Path(other) / "model.h5").exists()
        assert store.read_bytes("run", "elsewhere", "model.h5") == b"v" * 100_000
        assert store.list("run", "elsewhere") == ["model.h5"]  # no temporary file left beside it


def test_a_checkpoint_a_kill_cut_short_is_not_resumed_from(tmp_path):
    """A kill part way through writing a checkpoint leaves a folder without its weights or its state, or a whole
    checkpoint of an epoch whose metrics were never logged: a restarted trial continues from the epoch before."""
    import dataclasses

    from pipelines.storage import open_store
    from pipelines.training.ray_train import write_epoch
    from search.runners import CheckpointKeeper, checkpoint_name, latest_checkpoint, resume_point

    store = open_store(str(tmp_path / "store"))
    keeper = CheckpointKeeper(store, "run")
    for epoch in (0, 1):
        saved = tmp_path / f"e{epoch}"
        saved.mkdir()
        (saved / "model.h5").write_bytes(b"weights")
        (saved / "state.json").write_text(json.dumps({"epoch": epoch, "best_epoch": epoch}))
        write_epoch(store, "run", {"epoch": epoch})
        keeper.add(str(saved), epoch, epoch)
    cut = checkpoint_name(2)
    store.write_bytes(json.dumps({"epoch": 2, "best_epoch": 2}).encode(), "run", cut, "state.json")  # no weights
    assert latest_checkpoint(store, "run") == checkpoint_name(1)
    store.write_bytes(b"weights", "run", cut, "model.h5")  # whole now, but epoch 2 was never logged
    assert latest_checkpoint(store, "run") == checkpoint_name(1)
    cfg = dataclasses.make_dataclass("Cfg", ["epochs", "monitor", "patience"])(3, "f1_macro", 0)
    assert resume_point(store, "run", cfg) == (checkpoint_name(1), None)  # epoch 2 is trained again
    write_epoch(store, "run", {"epoch": 2})
    assert resume_point(store, "run", cfg) == (cut, {"epoch": 2})  # the run is over: its last epoch reported
