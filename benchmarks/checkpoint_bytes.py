"""Bytes of weights written to the results store per trial, side by side: every epoch, against the schedule.

One search shaped like configs/paper.yaml's (Optuna TPE, ASHA with grace 1 and reduction 3, up to 20 epochs with
patience 5) on the phantom the training tests learn on (about 380 faces at 40 px, weinet, subject_kfold fold 0),
run twice in one run with the same seed: with `train.checkpoint_every_s: 0` (a checkpoint after every epoch,
what every trial wrote before the schedule) and with the default schedule (a checkpoint when an epoch improves
on the run's best, at the run's end, and else every 300 s of training). Each epoch's record says how many bytes
of weights it wrote (`checkpoint_bytes`); the figures are their sums per trial. Writes BENCHMARKS.md
(`checkpoint_bytes`) and removes what it wrote.

    .venv/bin/python benchmarks/checkpoint_bytes.py [--trials 8] [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cluster.local  # noqa: E402,F401
from pipelines.bootstrap import torch_first  # noqa: E402

torch_first()  # this process detects faces and trains

import numpy as np  # noqa: E402

from benchmarks.report import machine, write_block  # noqa: E402
from benchmarks.search_efficiency import learn_shards  # noqa: E402
from cluster.local import ensure_ray  # noqa: E402
from pipelines.storage import open_store  # noqa: E402
from pipelines.training.ray_train import read_epochs  # noqa: E402
from search.config import load_study_config  # noqa: E402
from search.layout import TRAIN_DIR  # noqa: E402
from search.study import searches, start_study, write_folds  # noqa: E402
from search.tuner import run_search  # noqa: E402

POLICIES = {"every epoch (checkpoint_every_s: 0)": 0.0, "improved, last, every 300 s (default)": None}


def one_search(work: Path, name: str, every_s: float | None, args) -> dict:
    import ray

    uri = str(work / f"results-{len(list(work.glob('results-*')))}")
    train = {"size": 40, "batch_size": 8, "patience": 5, **({"checkpoint_every_s": every_s} if every_s is not None else {})}
    cfg = load_study_config(ROOT / "configs" / "smoke.yaml", {
        "shards": str(work / "shards"), "storage": uri, "models": ["weinet"], "scenarios": ["subject_kfold"],
        "seed": 0, "train": train,
        "search": {"searcher": "optuna", "scheduler": "asha", "grace_period": 1, "reduction_factor": 3,
                   "startup_trials": 3, "trials": args.trials, "max_concurrent_trials": 1,
                   "space": {"learning_rate": [1e-4, 1e-2], "epochs": [args.epochs, args.epochs]}}})
    store = open_store(uri)
    start_study(cfg, store, False, lambda m: None)
    write_folds(cfg, store)
    key = searches(cfg)[0]
    t0 = time.perf_counter()
    ray.get(ray.remote(num_cpus=0)(run_search).remote(cfg.model_dump(mode="json"), uri, key.as_dict()))
    seconds = time.perf_counter() - t0
    per_trial, epochs, writes = [], 0, 0
    for trial in store.dirs(key.of(TRAIN_DIR)):
        rows = read_epochs(uri, key.of(TRAIN_DIR, trial))
        per_trial.append(sum(r["checkpoint_bytes"] for r in rows))
        epochs += len(rows)
        writes += sum(1 for r in rows if r["checkpoint_bytes"])
    print(name, per_trial, flush=True)
    return {"bytes": float(np.mean(per_trial)), "epochs": epochs, "writes": writes, "trials": len(per_trial),
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="painsearch-bench-ckpt-"))
    try:
        learn_shards(work)
        ensure_ray(num_cpus=os.cpu_count())
        runs = {name: one_search(work, name, every_s, args) for name, every_s in POLICIES.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    before, after = runs.values()
    lines = [machine(),
             f"Command: `.venv/bin/python benchmarks/checkpoint_bytes.py --trials {args.trials} --epochs {args.epochs}` "
             "(one search shaped like configs/paper.yaml's: TPE, ASHA grace 1 reduction 3, patience 5; weinet, "
             "subject_kfold fold 0, about 380 phantom faces at 40 px; both policies in one run, the same seed).",
             "",
             "| checkpoints written | trials | epochs trained | checkpoints | MiB of weights per trial | search |",
             "|---|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['trials']} | {r['epochs']} | {r['writes']} | {r['bytes'] / 2**20:.2f} | "
                     f"{r['seconds']:.0f} s |")
    lines += ["", f"Weights written to the store per trial: **{before['bytes'] / after['bytes']:.1f}x less** with the "
              f"schedule. Both searches trained {before['epochs']} and {after['epochs']} epochs (the same seed; "
              "a difference would come from the trials' timing, which Tune's ASHA sees)."]
    block = "\n".join(lines)
    print(block)
    write_block(args.out, "checkpoint_bytes", "Checkpoint bytes per trial", block)


if __name__ == "__main__":
    main()
