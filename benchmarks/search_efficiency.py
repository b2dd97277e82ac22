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
import atexit
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipelines.bootstrap  # noqa: E402,F401  (TensorFlow's environment, from its one home)

import cluster.local  # noqa: E402,F401
from pipelines.bootstrap import torch_first  # noqa: E402

torch_first()  # this process detects faces and trains

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.report import machine, save_results, write_block  # noqa: E402
from cluster.local import ensure_ray  # noqa: E402
from pipelines.config import prepare_config  # noqa: E402
from pipelines.phantom.synth import SCALES, sources, synth  # noqa: E402
from pipelines.shards.prepare import prepare  # noqa: E402
from pipelines.storage import open_store  # noqa: E402
from pipelines.training.ray_train import read_epochs  # noqa: E402
from search.config import load_study_config  # noqa: E402
from search.layout import DONE, TIMING_DIR, TRAIN_DIR, TRIALS  # noqa: E402
from search.study import searches, start_study, write_folds  # noqa: E402
from search.tuner import run_search  # noqa: E402

# the phantom the training tests learn on (tests/test_train.py)
LEARN = SCALES["learn"]


def learn_shards(work: Path) -> Path:
    """The LEARN phantom rendered under `work` and prepared at 40 px into `work/shards` (returned)."""
    synth(work / "phantom", scale=LEARN, seed=1)
    prepare(prepare_config({
        "sources": sources(work / "phantom"), "out": str(work / "shards"), "frames_per_subject_class": 0,
        "engine": "local", "chunk_size": 64, "preprocess": {"size": 40, "background": "grabcut"}}), log=lambda m: None)
    return work / "shards"


def curve(uri: str, cfg) -> dict:
    """What one search spent: best-so-far validation F1 by trial (in start order), epochs, the trials' span (from
    the first trial's loop start to the last epoch's end: what the method changes), Tune's run (the span plus
    Tune's start and the trial actor's start-up, the same for either method; choosing the best trial and scoring
    the test split come after it), and every trial's once-per-trial cost and every later epoch's cost (what each
    trial's timing and epoch log show: a trial's wall minus its epochs, plus its first epoch's excess over a later
    one)."""
    store = open_store(uri)
    key = searches(cfg)[0]
    trials = pd.read_csv(io.BytesIO(store.read_bytes(key.path, TRIALS)), dtype={"trial_id": str})
    done = json.loads(store.read_bytes(key.path, DONE))
    walls = {t["trial_id"]: t["wall_s"] for t in (json.loads(store.read_bytes(key.path, TIMING_DIR, f))
                                                  for f in store.list(key.path, TIMING_DIR))
             if "fit_s" in t}  # the trial's own record: one Tune's side wrote has Tune's wall (search.trial)
    best, out, epochs, once, per_epoch, starts, ends = -1.0, [], 0, [], [], [], []
    for tid in trials["trial_id"]:  # Tune lists trials in the order they were created
        rows = read_epochs(uri, key.of(TRAIN_DIR, tid))
        epochs += len(rows)
        best = max([best] + [r["val_f1_macro"] for r in rows])  # a failed trial may have logged none
        out.append(best)
        cost = [r["time_fit_s"] + r["time_eval_s"] for r in rows]
        if not cost:
            continue
        starts.append(rows[0]["time"] - rows[0]["time_since_start_s"])
        ends.append(rows[-1]["time"])
        later = float(np.median(cost[1:])) if len(cost) > 1 else cost[0]
        per_epoch += cost[1:]
        if tid in walls:
            once.append(walls[tid] - sum(cost) + cost[0] - later)
    return {"best": out, "epochs": epochs, "span": max(ends) - min(starts), "tune": done["tuning_seconds"],
            "once": once, "per_epoch": per_epoch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--startup", type=int, default=4, help="TPE's random trials before it models the space")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="painsearch-bench-"))

    atexit.register(shutil.rmtree, work, True)  # what the benchmark wrote goes with it
    learn_shards(work)
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
            results[name].append({**curve(uri, cfg), "search": time.perf_counter() - t0})

    def mean_curve(runs) -> np.ndarray:
        return np.mean([r["best"] for r in runs], axis=0)

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
        + " | epochs spent | trials | Tune's run | whole search |",
        "|---|" + "---|" * (args.trials + 4),
    ]
    mean = lambda runs, k: float(np.mean([r[k] for r in runs]))  # noqa: E731
    for name, runs in results.items():
        c = mean_curve(runs)
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in c) + f" | {mean(runs, 'epochs'):.0f} | "
                     f"{mean(runs, 'span'):.0f} s | {mean(runs, 'tune'):.0f} s | {mean(runs, 'search'):.0f} s |")
    a, r = results["TPE + ASHA"], results["random"]
    ratio = {k: mean(a, k) / mean(r, k) for k in ("epochs", "span", "tune", "search")}
    start = float(np.mean([x["tune"] - x["span"] for runs in results.values() for x in runs]))
    lines += ["", f"With the same {args.trials} trials, TPE + ASHA reached {mean_curve(a)[-1]:.3f} against random "
              f"search's {mean_curve(r)[-1]:.3f}, spending {ratio['epochs']:.2f}x the epochs in {ratio['span']:.2f}x "
              f"the wall time of the trials (from the first trial's start to the last trial's end, what the method "
              f"changes); {ratio['span'] - ratio['epochs']:+.2f} from the epoch ratio.",
              "",
              f"Tune's run took {ratio['tune']:.2f}x: it adds {start:.1f} s per search (mean) before the first trial "
              f"trains, the same for either method (Tune's start, and the trial actor's process with its imports and "
              f"TensorFlow, loaded once for all the search's trials). The whole search, with choosing the best trial "
              f"and scoring the test split after it, took {ratio['search']:.2f}x."]
    once = float(np.median([c for runs in results.values() for run in runs for c in run["once"]]))
    epoch = float(np.median([c for runs in results.values() for run in runs for c in run["per_epoch"]]))
    model = (args.trials * once + mean(a, "epochs") * epoch) / (args.trials * once + mean(r, "epochs") * epoch)
    lines += ["", f"Each trial pays a cost once, however many epochs it runs (its kept model reset, its first step, "
              f"its results written, its Keras state released; the actor's first trial also builds the model and "
              f"traces its step): median {once:.2f} s here, against {epoch:.2f} s for each further epoch (fit and "
              f"validation), so a trial ASHA stops at 2 epochs pays it as fully as one that runs 10; from those two "
              f"figures and the epochs each method spent, the trials' wall-time ratio would be {model:.2f}x. The "
              f"trials' wall times measured here differ from that by {abs(ratio['span'] - model):.2f} (this machine is "
              "shared, and the two methods' trials differ in length)."]
    block = "\n".join(lines)
    print(block)
    write_block(args.out, "search_efficiency", "Search efficiency (TPE + ASHA against random)", block)
    save_results("search_efficiency", {
        "epochs": {k: mean(v, "epochs") for k, v in results.items()},
        "trials_s": {k: mean(v, "span") for k, v in results.items()},
        "tune_s": {k: mean(v, "tune") for k, v in results.items()},
        "search_s": {k: mean(v, "search") for k, v in results.items()},
        "max_epochs": 10, "trials": args.trials})


if __name__ == "__main__":
    main()
