"""Best validation F1 against trials spent: Optuna TPE + ASHA against random search, same budget.

One search (weinet, subject_kfold, fold 0) on a phantom of about 380 faces at 40 px, run twice with
the same trial budget and search space (learning rate 1e-5..1e-2 log, epochs 2..10, batch 8): once
as the study runs it (Optuna's TPE sampler, ASHA stopping trials at rungs of 2 and 6 epochs), once as random
search (Optuna's random sampler, every trial to its end). Reports the best validation macro F1
after each trial, the epochs spent, and the wall time. Writes BENCHMARKS.md (`search_efficiency`).

Both samplers share a seed, so TPE's random start (`--startup` trials) proposes what random search
proposes; the curves part where TPE starts to model the space.

    .venv/bin/python benchmarks/search_efficiency.py [--trials 12] [--startup 4] [--seeds 2]
"""

from __future__ import annotations

import argparse
import io
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
import pandas as pd  # noqa: E402

from benchmarks.report import machine, save_results, write_block  # noqa: E402
from cluster.local import ensure_ray  # noqa: E402
from pipelines.config import prepare_config  # noqa: E402
from pipelines.phantom.synth import Scale, sources, synth  # noqa: E402
from pipelines.shards.prepare import prepare  # noqa: E402
from pipelines.storage import open_store  # noqa: E402
from pipelines.training.ray_train import read_epochs  # noqa: E402
from search.config import load_study_config  # noqa: E402
from search.layout import DONE, TIMING_DIR, TRAIN_DIR, TRIALS  # noqa: E402
from search.study import searches, start_study, write_folds  # noqa: E402
from search.tuner import run_search  # noqa: E402

# the phantom the training tests learn on (tests/test_train.py)
LEARN = Scale(6, 2, 16, (256, 192), 4, 1, 6, 4, (320, 180), 40, (240, 320), 8, 1, (256, 192))


def curve(uri: str, cfg) -> tuple[list[float], int, float, list[float], list[float]]:
    """Best-so-far validation F1 by trial (in start order), epochs spent, wall seconds of the search's trials
    (Tune's run; choosing the best trial and scoring the test split after it cost the same for both methods),
    and every trial's once-per-trial cost and every later epoch's cost (what each trial's timing and epoch log
    show: a trial's wall minus its epochs, plus its first epoch's excess over a later one, the step's tracing)."""
    store = open_store(uri)
    key = searches(cfg)[0]
    trials = pd.read_csv(io.BytesIO(store.read_bytes(key.path, TRIALS)), dtype={"trial_id": str})
    done = json.loads(store.read_bytes(key.path, DONE))
    walls = {t["trial_id"]: t["wall_s"] for t in (json.loads(store.read_bytes(key.path, TIMING_DIR, f))
                                                  for f in store.list(key.path, TIMING_DIR))}
    best, out, epochs, once, per_epoch = -1.0, [], 0, [], []
    for tid in trials["trial_id"]:  # Tune lists trials in the order they were created
        rows = read_epochs(uri, key.of(TRAIN_DIR, tid))
        epochs += len(rows)
        best = max([best] + [r["val_f1_macro"] for r in rows])  # a failed trial may have logged none
        out.append(best)
        cost = [r["time_fit_s"] + r["time_eval_s"] for r in rows]
        if not cost:
            continue
        later = float(np.median(cost[1:])) if len(cost) > 1 else cost[0]
        per_epoch += cost[1:]
        if tid in walls:
            once.append(walls[tid] - sum(cost) + cost[0] - later)
    return out, epochs, done["tuning_seconds"], once, per_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--startup", type=int, default=4, help="TPE's random trials before it models the space")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="painsearch-bench-"))
    root = work / "phantom"
    synth(root, scale=LEARN, seed=1)
    prepare(prepare_config({
        "sources": sources(root),
        "out": str(work / "shards"), "frames_per_subject_class": 0, "engine": "local", "chunk_size": 64,
        "preprocess": {"size": 40, "background": "grabcut"}}), log=lambda m: None)
    ensure_ray(num_cpus=os.cpu_count())
    results: dict[str, list] = {"TPE + ASHA": [], "random": []}
    for seed in range(args.seeds):
        for name, search in (("TPE + ASHA", {"searcher": "optuna", "scheduler": "asha", "grace_period": 2,
                                             "reduction_factor": 3, "startup_trials": args.startup}),
                             ("random", {"searcher": "random", "scheduler": "none"})):
            uri = str(work / f"results-{name.split()[0].lower()}-{seed}")
            cfg = load_study_config(ROOT / "configs" / "smoke.yaml", {
                "shards": str(work / "shards"), "storage": uri, "models": ["weinet"], "scenarios": ["subject_kfold"],
                "seed": seed, "train": {"size": 40, "batch_size": 8, "patience": 0},
                "search": {**search, "trials": args.trials, "max_concurrent_trials": 1,
                           "space": {"learning_rate": [1e-5, 1e-2], "epochs": [2, 10]}}})
            t0 = time.perf_counter()
            store = open_store(uri)
            start_study(cfg, store, False, print)
            write_folds(cfg, store)
            key = searches(cfg)[0]  # one search: the study's other folds are not needed to compare searchers
            import ray

            done = ray.get(ray.remote(num_cpus=0)(run_search).remote(
                cfg.model_dump(mode="json"), uri, {"model": key.model, "scenario": key.scenario, "fold": key.fold}))
            print(done, flush=True)
            best, epochs, tuning, once, per_epoch = curve(uri, cfg)
            results[name].append((best, epochs, tuning, time.perf_counter() - t0, once, per_epoch))

    def mean_curve(runs) -> np.ndarray:
        return np.mean([r[0] for r in runs], axis=0)

    lines = [
        machine(),
        f"Command: `.venv/bin/python benchmarks/search_efficiency.py --trials {args.trials} --startup {args.startup} "
        f"--seeds {args.seeds}` "
        f"(one search: weinet, subject_kfold fold 0, about 380 phantom faces at 40 px; learning rate 1e-5..1e-2 "
        f"log, epochs 2..10, batch 8; both methods in one run, one trial at a time; TPE's first {args.startup} trials "
        f"are random and, with the seed shared, the same as random search's).",
        "",
        "Best validation macro F1 after k trials" + (f" (mean of {args.seeds} seeds)" if args.seeds > 1 else "") + ":",
        "",
        "| method | " + " | ".join(f"k={k}" for k in range(1, args.trials + 1))
        + " | epochs spent | trials' wall | whole search |",
        "|---|" + "---|" * (args.trials + 3),
    ]
    mean = lambda runs, i: float(np.mean([r[i] for r in runs]))  # noqa: E731
    for name, runs in results.items():
        c = mean_curve(runs)
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in c)
                     + f" | {mean(runs, 1):.0f} | {mean(runs, 2):.0f} s | {mean(runs, 3):.0f} s |")
    a, r = results["TPE + ASHA"], results["random"]
    epoch_ratio, wall_ratio = mean(a, 1) / mean(r, 1), mean(a, 2) / mean(r, 2)
    lines += ["", f"With the same {args.trials} trials, TPE + ASHA reached {mean_curve(a)[-1]:.3f} against random "
              f"search's {mean_curve(r)[-1]:.3f}, spending {epoch_ratio:.2f}x the epochs in {wall_ratio:.2f}x the wall "
              f"time of the trials (Tune's run); the whole search, with choosing the best trial and scoring the test "
              f"split, which do not depend on the method, took {mean(a, 3) / mean(r, 3):.2f}x."]
    once = float(np.median([c for runs in results.values() for run in runs for c in run[4]]))
    epoch = float(np.median([c for runs in results.values() for run in runs for c in run[5]]))
    model = (args.trials * once + mean(a, 1) * epoch) / (args.trials * once + mean(r, 1) * epoch)
    lines += ["", f"Each trial pays a cost once, however many epochs it runs (its model built, its training step traced, "
              f"its model released): median {once:.2f} s here, against {epoch:.2f} s for each further epoch (fit and "
              f"validation), so a trial ASHA stops at 2 epochs pays it as fully as one that runs 10; from those two "
              f"figures and the epochs each method spent, the trials' wall-time ratio would be {model:.2f}x. The "
              f"trials' wall times measured here differ from that by {abs(wall_ratio - model):.2f} (this machine is "
              "shared, and the two methods' trials differ in length)."]
    block = "\n".join(lines)
    print(block)
    write_block(args.out, "search_efficiency", "Search efficiency (TPE + ASHA against random)", block)
    save_results("search_efficiency", {
        "epochs": {k: float(np.mean([x[1] for x in v])) for k, v in results.items()},
        "wall_s": {k: float(np.mean([x[2] for x in v])) for k, v in results.items()},
        "search_s": {k: float(np.mean([x[3] for x in v])) for k, v in results.items()},
        "max_epochs": 10, "trials": args.trials})


if __name__ == "__main__":
    main()
