"""The scenario gap on the phantom: unseen images, unseen people, CP faces; and what each CP factor costs alone.

The paper's motivating observation is that networks trained on the public pain datasets do worse on adults
with cerebral palsy. This benchmark checks that the phantom shows it, and why, over seeded repeats (repeat r:
phantom seed r, training seed r):
- the phantom with every CP factor (`pipelines/phantom/cp_shift.py`), prepared at 32 px (`SIZES`);
- each network trained with fixed settings (no search: the benchmark measures the data, not a search) in the
  three scenarios, folds from `search.folds` as the study makes them: image_kfold and subject_kfold over
  PAIN-DB (2 folds), and external (the whole pool trains, the CP set tests);
- the ablation: the CP set rendered again (the same people and frames, `synth(datasets=("cppain",))`) with no
  factor, and with each factor alone, scored by the external model. `shortcut` also changes the sources, so
  its rows are scored by the external model of the main run (sources with the shortcut) against CP with no
  factor scored by the same model; every other factor by a model trained on sources without the shortcut.
The test predictions of all repeats are pooled per network and scenario (people are per repeat). Reports
accuracy and ROC AUC with subject-bootstrap intervals, the gaps image - subject and subject - CP with theirs,
per-class recall on CP, the paired CP-video analysis (`analysis/scenario_gap.py`), and the ablation. It
passes, for each network, when subject - CP accuracy is above 0 with its interval clear of 0, CP pain recall
exceeds CP no-pain recall, and the shortcut alone moves accuracy more than ROC AUC. Writes BENCHMARKS.md
(`scenario_gap`); `--smoke` runs the smallest version (the test suite runs it) and writes nothing.

    .venv/bin/python benchmarks/scenario_gap.py [--repeats 5] [--networks weinet,resnet50] [--smoke]
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipelines.bootstrap  # noqa: E402,F401  (TensorFlow's environment, from its one home)
from pipelines.bootstrap import torch_first  # noqa: E402

torch_first()  # this process detects faces and trains

import pandas as pd  # noqa: E402

from analysis.scenario_gap import METRICS, gap, scenario_scores, video_pairs  # noqa: E402
from benchmarks.phantom_training import (EXTERNAL, POOL, SETTINGS, STANDIN_SEED, phantom_arrays, scored,  # noqa: E402
                                         train)
from benchmarks.report import machine, save_results, write_block  # noqa: E402
from pipelines.phantom.cp_shift import FACTORS, CPShift  # noqa: E402
from pipelines.phantom.synth import Scale  # noqa: E402
from search.folds import make_folds  # noqa: E402


@dataclass(frozen=True)
class Size:
    """How big one repeat is: the phantom, the input, the folds and the training."""

    scale: Scale
    size: int
    folds: int
    epochs: int


SIZES = {
    # the demo's people (the `small` scale) with two frames less per UNBC sequence and one per MInt PAIN sweep,
    # every frame kept: about the demo's images after its sampling; 32 px, as the demo trains
    "full": Size(Scale(10, 3, 8, (320, 240), 8, 2, 4, 3, (640, 360), 40, (300, 400), 20, 80, (480, 360)), 32, 2, 16),
    "smoke": Size(Scale(3, 1, 8, (256, 192), 2, 1, 2, 3, (320, 180), 8, (240, 320), 6, 12, (256, 192)), 32, 2, 1),
}


def shards_of(work: Path, name: str, size: Size, seed: int, shift: CPShift, datasets: tuple[str, ...]) -> pd.DataFrame:
    return phantom_arrays(work / name, size.scale, size.size, seed, shift, datasets)


def one_repeat(work: Path, repeat: int, size: Size, networks: list[str], weights_dir: str, log) -> list[pd.DataFrame]:
    """Every network's test predictions of one repeat: the three scenarios and the ablation."""
    import tf_keras as keras

    out: list[pd.DataFrame] = []
    t = time.time()
    main = shards_of(work, f"r{repeat}-all", size, repeat, CPShift(), ("unbc", "mintpain", "delaware", "cppain"))
    plain = shards_of(work, f"r{repeat}-plain", size, repeat, CPShift.none(), POOL)  # no shortcut in the sources
    variants = {name: shards_of(work, f"r{repeat}-cp-{name}", size, repeat,
                                CPShift.none() if name == "none" else CPShift.only(name), EXTERNAL)
                for name in ("none", *FACTORS)}
    log(f"repeat {repeat}: data in {time.time() - t:.0f} s")
    meta = main.drop(columns=["x"])
    for network in networks:
        t = time.time()
        for scenario in ("image_kfold", "subject_kfold", "external"):
            folds = make_folds(meta, scenario, size.folds if scenario != "external" else 1, repeat, POOL, EXTERNAL)
            for fold, table in folds.groupby("fold"):
                roles = dict(zip(table["image_id"], table["role"]))
                role = main["image_id"].map(roles)
                model = train(network, main[role.isin(["train", "val"])], size.size, size.epochs, repeat, weights_dir)
                out.append(scored(model, main[role == "test"], repeat, network=network, scenario=scenario, fold=fold,
                                  cp_factors="all"))
                if scenario == "external":  # the ablation of `shortcut`: sources with it, CP with it alone or none
                    for name in ("shortcut", "none"):
                        out.append(scored(model, variants[name], repeat, network=network, scenario="ablation",
                                          fold=0, cp_factors=name, sources="shortcut"))
                keras.backend.clear_session()
        model = train(network, plain, size.size, size.epochs, repeat, weights_dir)  # every other factor: sources without the shortcut
        for name in ("none", *FACTORS):
            if name != "shortcut":
                out.append(scored(model, variants[name], repeat, network=network, scenario="ablation", fold=0,
                                  cp_factors=name, sources="plain"))
        keras.backend.clear_session()
        log(f"repeat {repeat}: {network} in {time.time() - t:.0f} s")
    for folder in work.glob(f"r{repeat}-*"):
        shutil.rmtree(folder, ignore_errors=True)
    return out


def summarise(preds: pd.DataFrame, n_boot: int) -> dict:
    """Per network: each scenario's scores, the two gaps, the CP videos, the ablation, and whether it passes."""
    result = {}
    for network, p in preds.groupby("network", sort=False):
        by = {s: p[(p["scenario"] == s)] for s in ("image_kfold", "subject_kfold", "external")}
        scores = {s: scenario_scores(df, n_boot) for s, df in by.items()}
        gaps = {f"{a} - {b}": {m: gap(by[a], by[b], m, n_boot) for m in METRICS}
                for a, b in (("image_kfold", "subject_kfold"), ("subject_kfold", "external"))}
        ablation = {}
        for sources_kind in ("plain", "shortcut"):
            abl = p[(p["scenario"] == "ablation") & (p["sources"] == sources_kind)]
            base = abl[abl["cp_factors"] == "none"]
            for name in abl["cp_factors"].unique():
                if name == "none":
                    continue
                rows = abl[abl["cp_factors"] == name]
                ablation[name] = {"sources": sources_kind, **scenario_scores(rows, n_boot),
                                  **{f"moves_{m}": METRICS[m](rows) - METRICS[m](base) for m in METRICS},
                                  "none_accuracy": METRICS["accuracy"](base), "none_roc_auc": METRICS["roc_auc"](base)}
        cp_gap = gaps["subject_kfold - external"]["accuracy"]
        short = ablation.get("shortcut", {})
        checks = {
            "subject - CP accuracy above 0, interval clear of 0": cp_gap["low"] > 0,
            "CP pain recall above CP no-pain recall": scores["external"]["recall_pain"] > scores["external"]["recall_no_pain"],
            "shortcut alone moves accuracy more than ROC AUC":
                abs(short.get("moves_accuracy", 0.0)) > abs(short.get("moves_roc_auc", 0.0)),
        }
        result[network] = {"scores": scores, "gaps": gaps, "videos": video_pairs(by["external"], n_boot),
                           "ablation": ablation, "checks": checks, "passes": all(checks.values())}
    return result


def fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:.3f}"


def block_of(summary: dict, command: str, seconds: float, repeats: int) -> str:
    lines = [machine(), f"Command: `{command}` ({repeats} repeats, {seconds / 60:.0f} min).", ""]
    for network, s in summary.items():
        lines += [f"**{network}**", "", "| scenario | accuracy [95 % CI] | ROC AUC [95 % CI] | pain recall | no-pain recall "
                  "| images | people |", "|---|---|---|---|---|---|---|"]
        for name, r in s["scores"].items():
            lines.append(f"| {name} | {fmt(r['accuracy'])} [{fmt(r['accuracy_low'])}, {fmt(r['accuracy_high'])}] "
                         f"| {fmt(r['roc_auc'])} [{fmt(r['roc_auc_low'])}, {fmt(r['roc_auc_high'])}] "
                         f"| {fmt(r['recall_pain'])} | {fmt(r['recall_no_pain'])} | {r['images']} | {r['subjects']} |")
        lines += ["", "| gap | accuracy [95 % CI] | ROC AUC [95 % CI] |", "|---|---|---|"]
        for name, g in s["gaps"].items():
            a, u = g["accuracy"], g["roc_auc"]
            lines.append(f"| {name} | {fmt(a['difference'])} [{fmt(a['low'])}, {fmt(a['high'])}] "
                         f"| {fmt(u['difference'])} [{fmt(u['low'])}, {fmt(u['high'])}] |")
        v = s["videos"]
        lines += ["", f"CP videos with a pain and a no-pain frame: {v['videos']}; the pain frame scores higher in "
                      f"{fmt(v['pain_higher'])} [{fmt(v['pain_higher_low'])}, {fmt(v['pain_higher_high'])}] of them, "
                      f"by {fmt(v['difference'])} [{fmt(v['difference_low'])}, {fmt(v['difference_high'])}] in pain "
                      f"probability.", "",
                  "| CP factor alone | sources | accuracy | ROC AUC | moves accuracy | moves ROC AUC | pain recall "
                  "| no-pain recall |", "|---|---|---|---|---|---|---|---|"]
        for name, r in s["ablation"].items():
            lines.append(f"| {name} | {r['sources']} | {fmt(r['accuracy'])} | {fmt(r['roc_auc'])} "
                         f"| {r['moves_accuracy']:+.3f} | {r['moves_roc_auc']:+.3f} | {fmt(r['recall_pain'])} "
                         f"| {fmt(r['recall_no_pain'])} |")
        lines += ["", "Checks: " + "; ".join(f"{k}: {'yes' if ok else 'no'}" for k, ok in s["checks"].items())
                  + f". **{'Passes' if s['passes'] else 'Does not pass'}.**", ""]
    lines.append("'moves' is the factor alone against CP faces with no factor, scored by the same model ('plain': "
                 "trained on sources without the open-mouth shortcut; 'shortcut': with it).")
    return "\n".join(lines).rstrip()


def run(repeats: int, networks: list[str], size: Size, n_boot: int, log=print) -> tuple[pd.DataFrame, dict]:
    from pipelines.models.weights import write_standins

    work = Path(tempfile.mkdtemp(prefix="painsearch-gap-"))
    atexit.register(shutil.rmtree, work, True)  # what the benchmark wrote goes with it
    pretrained = tuple(n for n in networks if n != "weinet")
    weights_dir = str(write_standins(work / "weights", pretrained, seed=STANDIN_SEED)) if pretrained else None
    preds = pd.concat([df for r in range(repeats) for df in one_repeat(work, r, size, networks, weights_dir, log)],
                      ignore_index=True)
    shutil.rmtree(work, ignore_errors=True)
    return preds, summarise(preds, n_boot)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--networks", default="weinet,resnet50", help="comma-separated; one from scratch, one pretrained")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="the smallest version, as the test suite runs it; writes nothing")
    ap.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    unknown = [n for n in args.networks.split(",") if n not in SETTINGS]
    if unknown:
        ap.error(f"--networks: no settings for {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    t0 = time.time()
    preds, summary = run(args.repeats, args.networks.split(","), SIZES["smoke" if args.smoke else "full"], args.boot)
    seconds = time.time() - t0
    command = (f".venv/bin/python benchmarks/scenario_gap.py --repeats {args.repeats} --networks {args.networks}"
               + (" --smoke" if args.smoke else ""))
    block = block_of(summary, command, seconds, args.repeats)
    print(block)
    if not args.smoke:
        write_block(Path(args.write), "scenario_gap", "The scenario gap on the phantom (issue 24)", block)
        save_results("scenario_gap", {"summary": json.loads(json.dumps(summary, default=float)), "seconds": seconds})


if __name__ == "__main__":
    main()
