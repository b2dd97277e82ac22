"""`painsearch search run`: the study of a config, in this process's Ray or on the cluster of RAY_ADDRESS."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pipelines.errors import PainsearchError
from pipelines.progress import say


def parse_sets(items: Sequence[str] | None) -> dict:
    """`--set a.b=value` pairs -> a nested mapping; values are read as YAML (numbers, lists, null)."""
    import yaml

    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PainsearchError(f"`--set {item}` is not KEY=VALUE; write it like --set search.trials=4.")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise PainsearchError(f"The value in `--set {item}` is not valid YAML; quote it or fix its syntax.") from None
        node = out
        parts = key.strip().removeprefix("study.").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _run(args: argparse.Namespace) -> int:
    from cluster.local import ensure_ray
    from search.config import load_study_config
    from search.study import check_inputs, run_study

    overrides = parse_sets(args.set)
    if args.storage:
        overrides["storage"] = args.storage
    cfg = load_study_config(args.config, overrides)
    check_inputs(cfg, args.storage)  # before Ray starts: a mistake costs a second, not a cluster start
    ensure_ray(num_cpus=args.num_cpus)
    summary = run_study(cfg, resume=args.resume)
    failed = int((summary["status"] != "ok").sum()) if len(summary) else 0
    say(f"search: {len(summary)} searches done ({failed} failed) in {cfg.storage}; "
          f"read it with `painsearch analyze {cfg.storage} --out report`")
    return 0


def _journals(args: argparse.Namespace) -> int:
    import json

    from pipelines.storage import open_store
    from search.layout import STUDY, search_keys
    from search.optuna_store import merge_journals

    store = open_store(args.results)
    if not store.exists(STUDY):
        raise PainsearchError(f"{store.uri} holds no painsearch study ({STUDY} is missing); pass the --storage of a "
                              f"`painsearch search run`.")
    out = Path(args.out)
    if out.exists():
        raise PainsearchError(f"{out} exists already; name a new file (the journal is written afresh).")
    cfg = json.loads(store.read_bytes(STUDY))["config"]
    copied = merge_journals(store, search_keys(cfg["models"], cfg["scenarios"], cfg["folds"]), out)
    if not copied:
        raise PainsearchError(f"{store.uri} holds no search's Optuna journal yet; run the study first.")
    say(f"search: {len(copied)} Optuna studies in {out}; open them with `optuna-dashboard {out}`")
    return 0


def add(sub) -> None:
    se = sub.add_parser("search", help="the study: Ray Tune + Optuna over networks x scenarios x folds")
    sesub = se.add_subparsers(dest="search_command", required=True, metavar="STEP")
    r = sesub.add_parser(
        "run", help="run (or resume) the study of a config",
        description="One Optuna (TPE) + ASHA search per (network, scenario, fold). Trials train on the training "
        "split minus a validation split, which alone ranks them; the test split is scored once per search, with "
        "the chosen trial's weights at its best validation epoch, or with `study.refit` by the chosen settings "
        "retrained on training + validation. Searches run concurrently; results (folds, Tune state, per-trial "
        "metrics, the chosen weights, test predictions) go to the results store. Runs in-process on this machine, "
        "or on the cluster named by RAY_ADDRESS (as under `ray job submit`).",
    )
    r.add_argument("--config", required=True, help="a study config with `data:` and `study:` sections (see configs/)")
    r.add_argument("--storage", metavar="URI", help="results store: folder or s3://bucket/prefix (default: the config's)")
    r.add_argument("--resume", action="store_true", help="continue the study already in the results store")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a `study:` setting, e.g. --set search.trials=4 --set models=[weinet] (repeatable)")
    r.add_argument("--num-cpus", dest="num_cpus", type=int, help="CPUs of the in-process Ray (default: all); ignored on a cluster")
    r.set_defaults(fn=_run)
    j = sesub.add_parser(
        "journals", help="gather every search's Optuna journal into one file optuna-dashboard opens",
        description="Each search keeps its Optuna study as a journal in the results store; this copies them all "
        "into one new journal file, each under its search's name (<model>-<scenario>-fold<k>), so that "
        "`optuna-dashboard FILE` shows the whole study.")
    j.add_argument("results", metavar="RESULTS", help="a results store (folder or s3://...)")
    j.add_argument("--out", required=True, metavar="FILE", help="the journal file to write (new)")
    j.set_defaults(fn=_journals)
