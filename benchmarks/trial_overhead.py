"""Per-trial overhead of the study: a trial's wall time minus the time Keras spends in `fit`.

Runs the smoke study (configs/smoke.yaml: 2 networks x 3 scenarios x 2 folds x 2 trials, 1 epoch,
32 px) on the tiny phantom and splits every trial's wall time, from what the trials themselves
recorded (timing/*.json and the per-epoch metrics):

  driver set-up     the Tune trial function before `trainer.fit`: fold ids, the Ray Datasets, the trainer
  Ray Train         `trainer.fit` minus the worker's loop: controller, worker group, placement groups, teardown
  worker set-up     the worker's loop before the first epoch: strategy, validation split read, model build
  fit               Keras `fit` (what the trial is for)
  eval + report     scoring the validation split, checkpoint and report after each epoch

Writes median and spread to BENCHMARKS.md between the `trial_overhead` markers.

    .venv/bin/python benchmarks/trial_overhead.py [--trials 2] [--folds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cluster.local  # noqa: E402,F401
from pipelines.bootstrap import torch_first  # noqa: E402

torch_first()  # this process detects faces and trains

import numpy as np  # noqa: E402

from benchmarks.report import machine, write_block  # noqa: E402
from cluster.local import ensure_ray  # noqa: E402
from pipelines.config import prepare_config  # noqa: E402
from pipelines.phantom.synth import sources, synth  # noqa: E402
from pipelines.shards.prepare import prepare  # noqa: E402
from pipelines.storage import open_store  # noqa: E402
from pipelines.training.ray_train import read_epochs  # noqa: E402
from search.config import load_study_config  # noqa: E402
from search.study import run_study, searches  # noqa: E402

RAY_TRAIN_NOTE = ("Ray Train's part is its own machinery: each run starts its controller, a worker, a synchronization "
                  "actor, a dataset manager, a placement-group cleaner and Tune's report queue, each a new process. "
                  "painsearch trims what it controls: neither the trial's Tune process nor the controller imports "
                  "TensorFlow (the stock TensorflowConfig's package does, and the stock TensorflowTrainer imports that "
                  'package; see the empty-run rows above), one worker reads an unsplit dataset (no split coordinator) '
                  'and trains without MultiWorkerMirroredStrategy, Ray Train polls every 0.5 s and its preemption '
                  "watcher is off, the fold's rows are read once per trial into the object store, Ray Data's decode "
                  "tasks ask for a quarter of a CPU (at one CPU, four concurrent trials' workers held every core, their"
                  " decode tasks waited and the cores stood about 80 % idle). Tune's trial actors are not reused: a "
                  "reused actor could not be reset while a stopped trial's run wound down, and the search hung "
                  '(search/tuner.py).')
PARTS = ("driver set-up", "Ray Train", "worker set-up", "fit", "eval + report")


def trial_parts(store, key, timing: dict) -> dict[str, float]:
    epochs = read_epochs(store.uri, f"{key.path}/train/{timing['trial_id']}")
    fit = sum(e["time_fit_s"] for e in epochs)
    evals = sum(e["time_eval_s"] for e in epochs)
    worker_total = epochs[-1]["time_since_start_s"]
    first = epochs[0]
    worker_setup = first["time_since_start_s"] - first["time_fit_s"] - first["time_eval_s"]
    return {"wall": timing["wall_s"], "driver set-up": timing["setup_s"], "Ray Train": timing["fit_s"] - worker_total,
            "worker set-up": worker_setup, "fit": fit, "eval + report": worker_total - worker_setup - fit,
            "eval": evals}


def _empty_loop(config: dict) -> None:
    """A train loop that does nothing: what is left is Ray Train's own cost per run."""


def empty_runs(repeats: int, work: Path) -> dict[str, list[float]]:
    """Empty TensorflowTrainer runs alone on the machine, the stock TensorflowConfig and painsearch's
    KerasConfig alternated (one worker, 0.5 CPU, as a smoke trial)."""
    from ray.train import DataConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowConfig, TensorflowTrainer

    from pipelines.training.tf_backend import KerasConfig

    times: dict[str, list[float]] = {"TensorflowConfig (stock)": [], "KerasConfig (painsearch)": []}
    for i in range(repeats):
        for label, backend in (("TensorflowConfig (stock)", TensorflowConfig), ("KerasConfig (painsearch)", KerasConfig)):
            t = time.perf_counter()
            TensorflowTrainer(_empty_loop, tensorflow_config=backend(),
                              scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
                              dataset_config=DataConfig(datasets_to_split=[]),
                              run_config=RunConfig(storage_path=str(work / "empty"), name=f"{backend.__name__}-{i}")).fit()
            times[label].append(time.perf_counter() - t)
    return times


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--empty-repeats", type=int, default=3, help="empty TensorflowTrainer runs per backend config")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="painsearch-bench-"))
    synth(work / "phantom", scale="tiny", seed=0)
    root = work / "phantom"
    prepare(prepare_config({
        "sources": sources(root),
        "out": str(work / "shards"), "frames_per_subject_class": 4, "engine": "local", "chunk_size": 16,
        "preprocess": {"size": 32, "background": "grabcut"}}), log=lambda m: None)
    cfg = load_study_config(ROOT / "configs" / "smoke.yaml", {
        "shards": str(work / "shards"), "storage": str(work / "results"),
        "folds": args.folds, "search": {"trials": args.trials, "verbose": 0}})
    ensure_ray(num_cpus=os.cpu_count())
    t0, (busy0, total0) = time.perf_counter(), cpu_ticks()
    run_study(cfg, log=lambda m: print(m, flush=True))
    study_s = time.perf_counter() - t0
    busy1, total1 = cpu_ticks()
    busy_share = (busy1 - busy0) / max(total1 - total0, 1)

    store = open_store(cfg.storage)
    rows = []
    for key in searches(cfg):
        for f in store.list(key.path, "timing"):
            rows.append(trial_parts(store, key, json.loads(store.read_bytes(key.path, "timing", f))))
    wall = np.array([r["wall"] for r in rows])
    overhead = wall - np.array([r["fit"] for r in rows])

    def stat(values) -> str:
        v = np.asarray(values)
        return f"{np.median(v):.1f} s ({np.percentile(v, 10):.1f}-{np.percentile(v, 90):.1f})"

    lines = [
        machine(),
        f"Command: `.venv/bin/python benchmarks/trial_overhead.py --trials {args.trials} --folds {args.folds} --empty-repeats {args.empty_repeats}` "
        f"(the smoke study: {len(cfg.models)} networks x {len(cfg.scenarios)} scenarios x {cfg.folds} folds x "
        f"{args.trials} trials = {len(rows)} trials, 1 epoch each, 32 px, tiny phantom; whole study {study_s:.0f} s, "
        f"the cores busy {100 * busy_share:.0f} % of it).",
        "",
        "Per trial: median (10th-90th percentile).",
        "",
        "| part | time per trial |",
        "|---|---|",
        f"| wall | {stat(wall)} |",
        f"| overhead = wall - Keras fit | {stat(overhead)} |",
        *[f"| {p} | {stat([r[p] for r in rows])} |" for p in PARTS],
        "",
    ]
    empty = empty_runs(args.empty_repeats, work)
    lines += [
        f"An empty TensorflowTrainer run (a loop that does nothing; one worker; alone on the machine, after the study; "
        f"median of {args.empty_repeats}, the two configs alternated):",
        "",
        "| backend config | empty run |",
        "|---|---|",
        *[f"| {k} | {np.median(v):.1f} s ({min(v):.1f}-{max(v):.1f}) |" for k, v in empty.items()],
        "",
    ]
    shares = {p: float(np.median([r[p] for r in rows])) for p in PARTS if p != "fit"}
    top = max(shares, key=shares.get)
    lines.append(
        f"The overhead is dominated by **{top}** ({shares[top]:.1f} s of a median {np.median(overhead):.1f} s). "
        f"{cfg.search.concurrent_searches} searches run at once on the {os.cpu_count()} cores, so each part "
        "includes waiting for a core. "
        "It is a fixed cost per trial (process start-up and placement, not per image): on a GPU node, where an "
        "epoch of PAIN-DB takes seconds and a trial runs tens of epochs, it is a small share of the trial; on this "
        "CPU, with one-epoch trials of a few dozen images, it is nearly all of it. "
        + RAY_TRAIN_NOTE
    )
    block = "\n".join(lines)
    print(block)
    write_block(args.out, "trial_overhead", "Trial overhead (the study)", block)


if __name__ == "__main__":
    main()
