"""The paper study's wall time on 1, 8 and 32 GPUs, estimated (no GPU here): what each assumption is, and where
each measured figure comes from.

Measured (this machine): a trial's fixed cost under each runner and an inline actor's start-up
(benchmarks/results/trial_overhead.json, from benchmarks/trial_overhead.py); the share of epochs TPE + ASHA
spends against trials run to their end (benchmarks/results/search_efficiency.json); each network's FLOPs per
image at its paper size (counted here with TensorFlow's profiler); what a trial that cannot reuse its actor's
kept network pays to build it at its paper size, with its ImageNet weights (stand-in files of the real size) and
half its backbone frozen, and to trace its train step and inference pass (host-side work: timed here). From
configs/paper.yaml: the trial counts and concurrency. Assumed (stated in the output): the GPU's sustained training
throughput, the cost of a training step against a forward pass, the size of PAIN-DB and of the external set, the
epochs a trial asks for, which trials rebuild their network.

    .venv/bin/python benchmarks/paper_estimate.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import load_results, write_block  # noqa: E402

GPU = ("an NVIDIA A10G (g5.2xlarge)", 20e12)  # sustained mixed-precision training FLOP/s: a sixth of its tensor peak
TRAIN_PER_FORWARD = 3.0  # a training step costs about three forward passes (forward, two backward)
POOL_IMAGES = 2492  # PAIN-DB after the paper's sampling: the phantom of its size (benchmarks/preprocess.py)
EXTERNAL_IMAGES = 109  # CP-PAIN (docs/datasets.md)
MEAN_EPOCHS = 30  # what a trial asks for on average: the middle of the default epochs range, 10..50


def forward_flops(name: str) -> float:
    """FLOPs of one forward pass of one image at the network's paper size (TensorFlow's profiler)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from pipelines.models import get_spec
    from pipelines.models.build import build

    size = get_spec(name).paper_size
    model = build(name)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec([1, size, size, 3]))
    graph = convert_variables_to_constants_v2(fn).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    flops = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts)
    tf.keras.backend.clear_session()
    return float(flops.total_float_ops)


def rebuild_seconds(name: str, weights: str) -> float:
    """What a trial pays when its actor's kept network cannot serve it (`pipelines.training.model_cache`): the
    network built and compiled at its paper size (pretrained ones from a weights file of the real size, half their
    backbone frozen), its train step traced, its inference pass traced. Each trace is timed as its first call less
    a second one, on a batch of 2 (a trace does not depend on the batch). A pretrained network's stand-in weights
    file goes when it has been timed (hundreds of MB for the ten)."""
    import tempfile
    import time

    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from pipelines.config import TrainConfig
    from pipelines.models import get_spec
    from pipelines.models.build import resolve
    from pipelines.models.weights import weights_file_name
    from pipelines.training.loop import compile_model

    spec = get_spec(name)
    pretrained = spec.pretrained and weights == "imagenet"
    with tempfile.TemporaryDirectory(prefix="painsearch-standins-") as folder:
        weights_dir = Path(folder)
        if pretrained:  # Keras's architecture with random weights, under the file name it publishes
            resolve(spec.builder)(include_top=False, weights=None, input_shape=(spec.paper_size, spec.paper_size, 3)
                                  ).save_weights(str(weights_dir / weights_file_name(name)))
            keras.backend.clear_session()
        cfg = TrainConfig.model_validate({"model": name, "size": spec.paper_size, "batch_size": 2, "epochs": 1,
                                          "weights": "imagenet" if pretrained else "none",
                                          "weights_dir": str(weights_dir), "finetune_depth": 0.5 if pretrained else 0.0})
        x = np.random.default_rng(0).uniform(0, 255, (2, spec.paper_size, spec.paper_size, 3)).astype("float32")
        y = np.array([0, 1])
        t0 = time.perf_counter()
        model = compile_model(cfg, tf.distribute.get_strategy())
        forward = tf.function(lambda t: model(t, training=False))
        t1 = time.perf_counter()
    timed = []
    for step in (lambda: model.train_on_batch(x, y), lambda: forward(x).numpy()):
        first = time.perf_counter()
        step()
        second = time.perf_counter()
        step()
        timed.append((second - first) - (time.perf_counter() - second))
    keras.backend.clear_session()
    return (t1 - t0) + sum(timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    from search.config import load_study_config
    from search.space import space_for

    overhead = load_results("trial_overhead")
    efficiency = load_results("search_efficiency")
    cfg = load_study_config(ROOT / "configs" / "paper.yaml")
    asha_share = efficiency["epochs"]["TPE + ASHA"] / efficiency["epochs"]["random"]
    searches = len(cfg.models) * len(cfg.scenarios) * cfg.folds
    trials = searches * cfg.search.trials
    per_trial_fixed = overhead["overhead_s"]["inline"]
    share = cfg.resources.gpus_per_worker
    trials_per_actor = cfg.search.trials / cfg.search.max_concurrent_trials
    gpu_s = {}
    rows = []
    for name in cfg.models:
        f = forward_flops(name)
        rebuild = rebuild_seconds(name, cfg.train.weights)
        # an actor keeps one compiled network for the search's next trial, keyed by everything its traced step
        # depends on: a network whose fine-tuning depth is searched (pretrained, with ImageNet weights) is assumed
        # to rebuild in every trial (each may draw another depth; an upper bound), any other once per actor
        depth_searched = "finetune_depth" in space_for(name, cfg.train.weights == "imagenet", cfg.search.space,
                                                       cfg.search.space_by_model.get(name)).bounds
        fixed = per_trial_fixed + rebuild * (1.0 if depth_searched else 1.0 / trials_per_actor)
        per_search = 0.0
        for scenario in cfg.scenarios:
            # what one search's runs read: a k-fold fold trains on 64 % of the pool, validates on 16 % and tests on
            # 20 %; the external scenario trains on 80 %, validates on 20 % and tests on CP-PAIN
            train, val, test = ((0.8, 0.2, EXTERNAL_IMAGES / POOL_IMAGES) if scenario == "external"
                                else (0.64, 0.16, 0.2))
            epoch_s = f * POOL_IMAGES * (train * TRAIN_PER_FORWARD + val) / GPU[1]  # at a whole GPU's throughput
            train_s = epoch_s * MEAN_EPOCHS * asha_share
            # a trial on a share of a GPU trains at that share of its throughput (the same GPU-seconds in all) and
            # holds only its share while it does everything else: what sharing saves is the fixed cost's idle GPU
            per_search += cfg.search.trials * (train_s + fixed * share)
            if cfg.refit:  # the chosen settings again on training + validation, for the chosen trial's epochs
                per_search += f * POOL_IMAGES * (train + val) * TRAIN_PER_FORWARD * MEAN_EPOCHS / GPU[1]
            per_search += f * POOL_IMAGES * test / GPU[1]  # the test split scored once
            if scenario == cfg.scenarios[0]:
                rows.append((name, f / 1e9, epoch_s, rebuild, depth_searched, train_s + fixed))
        gpu_s[name] = per_search * cfg.folds
    total_gpu_s = sum(gpu_s.values())
    starts = (overhead["actor_start_s"] * searches * cfg.search.max_concurrent_trials)
    lines = [
        "Estimated, not measured: no GPU here. Inputs measured on this machine: a trial's fixed cost under the inline "
        f"runner, {per_trial_fixed:.1f} s (benchmarks/trial_overhead.py, {overhead['measured']}: a small network "
        f"reused from the actor's last trial, or built at 32 px); TPE + ASHA spent "
        f"{asha_share:.2f}x the epochs of trials run to their end (benchmarks/search_efficiency.py, "
        f"{efficiency['measured']}); each network's FLOPs at its paper size (TensorFlow's profiler, below); what a "
        "trial pays when its actor's kept network cannot serve it: the network built at its paper size (pretrained "
        "ones from ImageNet weights files of the real size, half the backbone frozen) and its train step and "
        "inference pass traced (below: host-side work, which a GPU node's CPU does at about this speed). A "
        f"network whose fine-tuning depth is searched rebuilds in every trial (an upper bound: each trial may draw "
        f"another of its 11 depths), any other once per actor ({trials_per_actor:.0f} trials).",
        f"Assumed: {GPU[0]} sustains {GPU[1] / 1e12:.0f} TFLOP/s of mixed-precision training (a sixth of its "
        f"tensor-core peak); a training step costs {TRAIN_PER_FORWARD:.0f} forward passes; PAIN-DB has {POOL_IMAGES} "
        f"images after sampling and CP-PAIN {EXTERNAL_IMAGES}; a trial asks for {MEAN_EPOCHS} epochs on average "
        "(the middle of 10..50) and TPE + ASHA trains the share above of them"
        + (f"; each search's refit trains {MEAN_EPOCHS} epochs on training + validation" if cfg.refit else "")
        + "; input decoding keeps up with training (BENCHMARKS.md, training input pipeline); the networks train at "
        "the rate their FLOPs allow.",
        "",
        f"| network | GFLOPs per image | {cfg.scenarios[0]} epoch on one GPU | build and traces | rebuilt | "
        f"{cfg.scenarios[0]} trial (ASHA's share of {MEAN_EPOCHS} epochs + fixed cost) |",
        "|---|---:|---:|---:|---|---:|",
        *[f"| {n} | {g:.2f} | {e:.1f} s | {b:.1f} s | {'every trial' if d else 'once per actor'} | {t / 60:.1f} min |"
          for n, g, e, b, d, t in rows],
        "",
        f"configs/paper.yaml: {searches} searches x {cfg.search.trials} trials = {trials} trials, "
        f"{cfg.resources.gpus_per_worker} GPU each, {cfg.search.concurrent_searches} searches x "
        f"{cfg.search.max_concurrent_trials} trials at once = up to "
        f"{cfg.search.concurrent_searches * cfg.search.max_concurrent_trials} trials, "
        f"{cfg.search.concurrent_searches * cfg.search.max_concurrent_trials * cfg.resources.gpus_per_worker:.0f} GPUs "
        f"busy. GPU time in all: {total_gpu_s / 3600:.0f} GPU-hours, plus {starts / 3600:.1f} h of actor start-ups "
        f"({overhead['actor_start_s']:.1f} s each, one per concurrent trial slot of a search).",
        "",
        "| GPUs | concurrency | wall time |",
        "|---:|---|---:|",
    ]
    slots = cfg.search.concurrent_searches * cfg.search.max_concurrent_trials
    for gpus in (1, 8, 32):
        needed = gpus / cfg.resources.gpus_per_worker  # trials that fill the GPUs
        if needed <= slots:
            note = f"as configured ({slots} trial slots; {needed:.0f} fill {gpus} GPU(s))"
        else:
            note = (f"`search.concurrent_searches` raised to {int(needed // cfg.search.max_concurrent_trials)} "
                    f"({needed:.0f} trials at once fill {gpus} GPUs)")
        hours = (total_gpu_s + starts * cfg.resources.gpus_per_worker) / gpus / 3600
        lines.append(f"| {gpus} | {note} | {hours:.1f} h |")
    lines += ["", f"Each estimate assumes the GPUs stay busy: with {searches} searches of {cfg.search.trials} trials "
              "there is always a trial waiting, except in the last searches; on 32 GPUs those last searches leave "
              "GPUs idle, so the real figure is somewhat above the estimate there."]
    block = "\n".join(lines)
    print(block)
    write_block(args.out, "paper_estimate", "The paper study at scale (estimate)", block)


if __name__ == "__main__":
    main()
