"""Per-trial overhead of the study under each trial runner: a trial's wall time minus the time Keras spends in `fit`.

Runs the smoke study (configs/smoke.yaml: 2 networks x 3 scenarios x 2 folds x 2 trials, 1 epoch, 32 px)
on the tiny phantom once per runner (`resources.runner`: `ray_train`, a Ray Train run per trial; `inline`,
the loop in the trial's reused Tune actor), alternated when repeated, and splits every trial's wall time
from what the trials themselves recorded (timing/*.json and the per-epoch metrics):

  before the loop   the trial function before the Keras loop starts: for ray_train the Ray Train run's
                    start-up (controller, workers, their TensorFlow import, placement); for inline the fold's
                    images (read and decoded once per actor); not the TensorFlow import of a fresh inline
                    actor, which is the actor's start-up (reported apart)
  model build       the loop before its first epoch: strategy, model build and compile (inline: the kept
                    model's reset after the actor's first trial)
  fit               Keras `fit` (what the trial is for)
  eval + report     scoring the validation split after each epoch, and each epoch's checkpoint and report
                    but the last's
  after the loop    the last epoch's checkpoint and report, then the end of the run (inline: Keras's state
                    released; ray_train: the Ray Train run's teardown)

Writes medians and spread to BENCHMARKS.md between the `trial_overhead` markers (with `--epochs N` other than 1,
between the `trial_overhead_N_epochs` markers: the same study with N epochs per trial, where the fixed cost of a
trial is spread over more training).

    .venv/bin/python benchmarks/trial_overhead.py [--trials 2] [--folds 2] [--repeats 1] [--epochs 1]
"""

from __future__ import annotations

import argparse
import atexit
import json
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

torch_first()  # this process detects faces (prepare) before anything imports TensorFlow

import numpy as np  # noqa: E402

from benchmarks.report import machine, save_results, write_block  # noqa: E402
from cluster.local import ensure_ray  # noqa: E402
from pipelines.config import prepare_config  # noqa: E402
from pipelines.phantom.synth import sources, synth  # noqa: E402
from pipelines.shards.prepare import prepare  # noqa: E402
from pipelines.storage import open_store  # noqa: E402
from pipelines.training.ray_train import read_epochs  # noqa: E402
from search.config import load_study_config  # noqa: E402
from search.layout import TIMING_DIR, TRAIN_DIR  # noqa: E402
from search.study import run_study, searches  # noqa: E402

RUNNERS = ("ray_train", "inline")
PARTS = ("before the loop", "model build", "fit", "eval + report", "after the loop")


def trial_parts(store, key, timing: dict) -> dict[str, float]:
    epochs = read_epochs(store.uri, key.of(TRAIN_DIR, timing["trial_id"]))
    fit = sum(e["time_fit_s"] for e in epochs)
    loop = epochs[-1]["time_since_start_s"]
    first = epochs[0]
    build = first["time_since_start_s"] - first["time_fit_s"] - first["time_eval_s"]
    before = first["loop_began_at"] - (timing["ended_at"] - timing["wall_s"])
    return {"wall": timing["wall_s"], "before the loop": before, "model build": build, "fit": fit,
            "eval + report": loop - build - fit, "after the loop": timing["wall_s"] - before - loop,
            "actor start": timing.get("actor_start_s", 0.0)}


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run_once(work: Path, runner: str, index: int, args) -> dict:
    cfg = load_study_config(ROOT / "configs" / "smoke.yaml", {
        "shards": str(work / "shards"), "storage": str(work / f"results-{runner}-{index}"),
        # every trial runs all its epochs: what a trial costs is measured, not what ASHA saves (search_efficiency)
        "folds": args.folds, "search": {"trials": args.trials, "scheduler": "none",
                                        "space": {"epochs": [args.epochs, args.epochs]}},
        "resources": {"runner": runner}})
    t0, (busy0, total0) = time.perf_counter(), cpu_ticks()
    run_study(cfg, log=lambda m: print(f"{runner}: {m}", flush=True))
    seconds = time.perf_counter() - t0
    busy1, total1 = cpu_ticks()
    store = open_store(cfg.storage)
    rows = [trial_parts(store, key, json.loads(store.read_bytes(key.path, TIMING_DIR, f)))
            for key in searches(cfg) for f in store.list(key.path, TIMING_DIR)]
    return {"seconds": seconds, "busy": (busy1 - busy0) / max(total1 - total0, 1), "rows": rows, "cfg": cfg}


def stat(values) -> str:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return "none recorded"
    return f"{np.median(v):.1f} s ({np.percentile(v, 10):.1f}-{np.percentile(v, 90):.1f})"


def share(rows: list[dict]) -> float:
    """The median over trials of (wall - fit) / wall."""
    return float(np.median([(r["wall"] - r["fit"]) / r["wall"] for r in rows]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="studies per runner, the runners alternated")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per trial (the smoke study's is 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="painsearch-bench-"))

    atexit.register(shutil.rmtree, work, True)  # what the benchmark wrote goes with it
    synth(work / "phantom", scale="tiny", seed=0)
    prepare(prepare_config({"sources": sources(work / "phantom"), "out": str(work / "shards"),
                            "frames_per_subject_class": 4, "engine": "local", "chunk_size": 16,
                            "preprocess": {"size": 32, "background": "grabcut"}}), log=lambda m: None)
    ensure_ray(num_cpus=os.cpu_count())
    runs: dict[str, list[dict]] = {r: [] for r in RUNNERS}
    for i in range(args.repeats):
        for runner in (RUNNERS if i % 2 == 0 else RUNNERS[::-1]):
            runs[runner].append(run_once(work, runner, i, args))

    rows = {r: [row for run in runs[r] for row in run["rows"]] for r in RUNNERS}
    study = {r: float(np.median([run["seconds"] for run in runs[r]])) for r in RUNNERS}
    cfg = runs["inline"][0]["cfg"]
    n = len(rows["inline"]) // args.repeats
    lines = [
        machine(),
        f"Command: `.venv/bin/python benchmarks/trial_overhead.py --trials {args.trials} --folds {args.folds} "
        f"--repeats {args.repeats} --epochs {args.epochs}` (the smoke study: {len(cfg.models)} networks x "
        f"{len(cfg.scenarios)} scenarios x {cfg.folds} folds x {args.trials} trials = {n} trials, "
        f"{args.epochs} epoch{'s' if args.epochs > 1 else ''} each, 32 px, tiny phantom, "
        f"{cfg.search.concurrent_searches} searches at once; the two runners alternated in one run"
        + (f", {args.repeats} studies each, medians" if args.repeats > 1 else "") + ").",
        "",
        "| | ray_train | inline |",
        "|---|---|---|",
        f"| whole study | {study['ray_train']:.0f} s | {study['inline']:.0f} s ({study['ray_train'] / study['inline']:.1f}x faster) |",
        "| cores busy | " + " | ".join(f"{100 * np.mean([run['busy'] for run in runs[r]]):.0f} %" for r in RUNNERS) + " |",
        "| trial wall | " + " | ".join(stat([x['wall'] for x in rows[r]]) for r in RUNNERS) + " |",
        "| overhead = wall - Keras fit | " + " | ".join(stat([x['wall'] - x['fit'] for x in rows[r]]) for r in RUNNERS) + " |",
        "| overhead share of the trial's wall (median) | " + " | ".join(f"{100 * share(rows[r]):.0f} %" for r in RUNNERS) + " |",
        *[f"| {p} | " + " | ".join(stat([x[p] for x in rows[r]]) for r in RUNNERS) + " |" for p in PARTS],
        "",
    ]
    paper = load_study_config(ROOT / "configs" / "paper.yaml")
    starts = [x["actor start"] for x in rows["inline"] if x["actor start"] > 0]
    lines.append(
        f"Per trial: median (10th-90th percentile). An inline trial's actor loads TensorFlow and the model code once, "
        f"before its first trial: {len(starts)} actors for {len(rows['inline'])} trials here, {stat(starts)} each "
        f"(inside the whole study's time, outside the trials'); with {cfg.search.max_concurrent_trials} trial at a time "
        f"and {args.trials} trials per search that is one actor for every {len(rows['inline']) / max(len(starts), 1):.0f} "
        f"trials, where a search of configs/paper.yaml ({paper.search.trials} trials, {paper.search.max_concurrent_trials} at "
        f"a time) starts one for every {paper.search.trials // paper.search.max_concurrent_trials}. Under ray_train the same "
        f"start-up is inside every trial's wall (its worker's model build and TensorFlow import).")
    lines.append(
        "Overhead is what a trial costs besides training: under ray_train each trial starts a Ray Train run (its "
        "controller, a worker that imports TensorFlow, a synchronization actor, a placement-group cleaner), which is a "
        "fixed cost per trial; inline, the trial's Tune actor keeps TensorFlow, the model code, the fold's decoded "
        "images and the compiled network with its traced train step (reset in place for each trial) from one trial to the "
        "next. On a GPU node an epoch of PAIN-DB takes seconds and a trial tens of "
        "epochs, so the fixed cost matters most where ASHA stops trials after a few epochs.")
    block = "\n".join(lines)
    print(block)
    key = "trial_overhead" if args.epochs == 1 else f"trial_overhead_{args.epochs}_epochs"
    title = "Trial overhead (the study)" if args.epochs == 1 else f"Trial overhead with {args.epochs} epochs per trial"
    write_block(args.out, key, title, block)
    save_results(key, {"epochs": args.epochs,
        "study_s": study, "overhead_share": {r: share(rows[r]) for r in RUNNERS},
        "overhead_s": {r: float(np.median([x["wall"] - x["fit"] for x in rows[r]])) for r in RUNNERS},
        "actor_start_s": float(np.median(starts)) if starts else 0.0})


if __name__ == "__main__":
    main()
