"""The `painsearch` command line: parse, validate, run; a user's mistake is one sentence, not a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow is imported anywhere
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cluster.local  # noqa: E402,F401  (before anything imports Ray: a local cluster stays on 127.0.0.1)
from pipelines.errors import PainsearchError  # noqa: E402


def _cmd_synth(args: argparse.Namespace) -> int:
    from pipelines.datasets.phantom import synth

    info = synth(args.out, scale=args.scale, seed=args.seed)
    counts = ", ".join(f"{k} {v}" for k, v in info["counts"].items())
    print(f"phantom ({args.scale}, seed {args.seed}) written to {args.out}: {counts} images; "
          f"prepare it with `painsearch data prepare --config {os.path.join(args.out, 'prepare.yaml')}`")
    return 0


def _prepare_config(args: argparse.Namespace):
    from pipelines.config import load_prepare_config, prepare_config

    overrides = {
        "out": args.out, "engine": args.engine, "workers": args.workers, "seed": args.seed,
        "frames_per_subject_class": args.frames, "chunk_size": args.chunk_size,
        "preprocess": {"background": args.background, "size": args.size, "u2net_dir": args.u2net_dir},
        "sources": {"unbc": args.unbc, "mintpain": args.mintpain, "manifest": args.manifest, "cppain": args.cppain},
    }
    if args.config:
        return load_prepare_config(args.config, overrides)
    if not args.out:
        raise PainsearchError("`data prepare` needs --out URI (a folder or s3://bucket/prefix), or --config CONFIG.")
    from pathlib import Path

    from pipelines.config import merge

    return prepare_config(merge({"sources": {}}, overrides), base=Path.cwd(), where="the command line")


def _cmd_prepare(args: argparse.Namespace) -> int:
    from pipelines.prepare import prepare

    cfg = _prepare_config(args)
    if cfg.engine == "ray":
        from cluster.local import ensure_ray

        ensure_ray(num_cpus=max(cfg.workers * cfg.threads_per_worker, 1) if not os.environ.get("RAY_ADDRESS") else None)
    report = prepare(cfg)
    _print_table2(report["datasets"])
    return 0


def _print_table2(datasets: dict) -> None:
    print(f"{'dataset':<12}{'subjects':>9}{'no pain':>9}{'pain':>7}{'total':>7}")
    for ds, c in datasets.items():
        print(f"{ds:<12}{c['subjects']:>9}{c['no_pain']:>9}{c['pain']:>7}{c['rows']:>7}")
    tot = {k: sum(c[k] for c in datasets.values()) for k in ("subjects", "no_pain", "pain", "rows")}
    print(f"{'PAIN-DB+CP':<12}{tot['subjects']:>9}{tot['no_pain']:>9}{tot['pain']:>7}{tot['rows']:>7}")


def _cmd_inspect(args: argparse.Namespace) -> int:
    from pipelines.inspect import breakdown

    table = breakdown(args.uri)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print(f"{'dataset':<12}{'subjects':>9}{'levels':>8}{'no pain':>9}{'pain':>7}{'total':>7}")
        for row in table["datasets"]:
            print(f"{row['dataset']:<12}{row['subjects']:>9}{row['levels']:>8}{row['no_pain']:>9}{row['pain']:>7}{row['total']:>7}")
        t = table["pain_db"]
        print(f"{'PAIN-DB':<12}{t['subjects']:>9}{'':>8}{t['no_pain']:>9}{t['pain']:>7}{t['total']:>7}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    if getattr(args, "models_command", None) == "fetch-weights":
        from pipelines.models import fetch_weights

        written = fetch_weights(args.to, args.models, args.mirror)
        print(f"fetch-weights: {len(written)} file(s) written to {args.to}" + (f": {', '.join(written)}" if written else " (all present)"))
        return 0
    from pipelines.models import model_table

    rows = model_table(args.classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'network':<13}{'input':>7}{'parameters':>14}  pretrained")
    for r in rows:
        print(f"{r['name']:<13}{r['input_size']:>7}{r['parameters']:>14,}  {'ImageNet' if r['pretrained'] else 'no'}")
    return 0


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


def _cmd_search(args: argparse.Namespace) -> int:
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
    print(f"search: {len(summary)} searches done ({failed} failed) in {cfg.storage}; "
          f"read it with `painsearch analyze {cfg.storage} --out report`")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from analysis.report import analyze

    lime = None
    if not args.no_lime:
        from cluster.local import ensure_ray

        ensure_ray(num_cpus=args.num_cpus)
        lime = {"num_samples": args.lime_samples, "images_per_class": args.lime_images, "hide_color": args.lime_hide,
                "positive_only": not args.lime_all_weights, "n_segments": args.lime_segments}
    result = analyze(args.results, args.out, lime=lime, ratings=args.ratings, n_boot=args.bootstrap)
    print(result["headline"][["model", "scenario", "accuracy", "f1_pain", "f1_macro [95% CI]"]].to_string(index=False))
    return 0


def _cmd_raters(args: argparse.Namespace) -> int:
    from analysis.icc import SCALES, rater_agreement
    from pipelines.datasets.cppain import read_ratings

    result = rater_agreement(read_ratings(args.ratings))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def rows(block: dict, label: str) -> None:
        for scale, r in block.items():
            print(f"{label:<14}{SCALES[scale]:<12}{r['icc2_1']:>7.2f} [{r['ci95_2_1'][0]:5.2f}, {r['ci95_2_1'][1]:5.2f}]"
                  f"{r['icc2_k']:>7.2f} [{r['ci95_2_k'][0]:5.2f}, {r['ci95_2_k'][1]:5.2f}]  {r['category']:<13}"
                  f"{r['n_targets']:>4} x {r['n_raters']}")

    print(f"{'stimulus':<14}{'scale':<12}{'ICC(2,1) [95% CI]':>22}{'ICC(2,k) [95% CI]':>22}  {'(2,1) is':<13}images x raters")
    rows(result["scales"], "all")
    for stimulus, block in result["by_stimulus"].items():
        rows(block, stimulus)
    print(f"pain by consensus (no rater scored FACS > 0 means no pain): {result['consensus_pain_share']:.1%} "
          f"of {result['n_images']} images")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from cluster.demo import run_demo

    return run_demo(args.out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="painsearch",
        description="Pain detection in face images at cluster scale: phantom data, preprocessing to Parquet "
        "shards, the ten networks of the study, the Ray Tune study over them, and its report.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="make, prepare and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="STEP")

    s = dsub.add_parser("synth", help="render the phantom datasets in their native layouts")
    s.add_argument("out", help="folder to write (new, empty, or an earlier phantom)")
    s.add_argument("--scale", default="tiny", choices=["tiny", "small", "paper"], help="how much to render (default tiny)")
    s.add_argument("--seed", type=int, default=0, help="the same seed renders the same images (default 0)")
    s.set_defaults(fn=_cmd_synth)

    pr = dsub.add_parser(
        "prepare", help="detect, crop and clean faces; write Parquet shards",
        description="Sample frames from the labels, decode and validate images, crop the face found by MTCNN, "
        "remove the background, and write Parquet shards plus prepare_report.json. Rerunning resumes.",
    )
    pr.add_argument("--config", help="YAML config: a study config's `data:` section, or a prepare file")
    pr.add_argument("--unbc", metavar="DIR", help="UNBC-McMaster folder as distributed")
    pr.add_argument("--mintpain", metavar="DIR", help="MInt PAIN folder as distributed")
    pr.add_argument("--manifest", metavar="CSV", help="manifest CSV (path,subject,label[,level,sequence,frame,dataset])")
    pr.add_argument("--cppain", metavar="DIR", help="CP-PAIN folder: images plus ratings.csv")
    pr.add_argument("--out", metavar="URI", help="output folder or s3://bucket/prefix")
    pr.add_argument("--background", choices=["u2net_human_seg", "grabcut", "none"], help="background removal (default u2net_human_seg)")
    pr.add_argument("--size", type=int, help="side of the stored face in pixels (default 224)")
    pr.add_argument("--u2net-dir", dest="u2net_dir", metavar="DIR", help="folder holding u2net_human_seg.onnx")
    pr.add_argument("--frames", type=int, metavar="N", help="frames per subject and class from video sources (default 20)")
    pr.add_argument("--workers", type=int, metavar="N", help="Ray actors running the detector (default 1)")
    pr.add_argument("--engine", choices=["ray", "local"], help="ray (default) or a plain in-process loop")
    pr.add_argument("--chunk-size", dest="chunk_size", type=int, metavar="N", help="images per shard (default 32)")
    pr.add_argument("--seed", type=int, help="sampling seed (default 0)")
    pr.set_defaults(fn=_cmd_prepare)

    i = dsub.add_parser("inspect", help="the PAIN-DB breakdown of prepared shards (the paper's Table 2)")
    i.add_argument("uri", help="the shards' folder or s3://bucket/prefix")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(fn=_cmd_inspect)

    m = sub.add_parser("models", help="the ten networks: input size, parameters, pretrained (Table 3)",
                       description="List the registered networks with Keras's own parameter counts, or fetch their "
                       "ImageNet weights once into a folder that cluster workers read.")
    m.add_argument("--classes", type=int, default=2, help="output classes to count parameters for (default 2)")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(fn=_cmd_models)
    msub = m.add_subparsers(dest="models_command", metavar="STEP")
    fw = msub.add_parser("fetch-weights", help="download the ImageNet no-top weights once, where the internet is reachable")
    fw.add_argument("--to", required=True, metavar="URI", help="folder or s3://bucket/prefix to fill")
    fw.add_argument("--models", nargs="+", metavar="NAME", help="only these networks (default: all pretrained)")
    fw.add_argument("--from", dest="mirror", default=None, metavar="URL", help="a mirror of Keras's application weights")
    fw.set_defaults(fn=_cmd_models)

    se = sub.add_parser("search", help="the study: Ray Tune + Optuna over networks x scenarios x folds")
    sesub = se.add_subparsers(dest="search_command", required=True, metavar="STEP")
    r = sesub.add_parser(
        "run", help="run (or resume) the study of a config",
        description="One Optuna (TPE) + ASHA search per (network, scenario, fold), each trial a Ray Train run; "
        "searches run concurrently. Results (folds, Tune state, per-trial metrics, best checkpoints, test "
        "predictions) go to the results store. Runs in-process on this machine, or on the cluster named by "
        "RAY_ADDRESS (as under `ray job submit`).",
    )
    r.add_argument("--config", required=True, help="a study config with `data:` and `study:` sections (see configs/)")
    r.add_argument("--storage", metavar="URI", help="results store: folder or s3://bucket/prefix (default: the config's)")
    r.add_argument("--resume", action="store_true", help="continue the study already in the results store")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a `study:` setting, e.g. --set search.trials=4 --set models=[weinet] (repeatable)")
    r.add_argument("--num-cpus", dest="num_cpus", type=int, help="CPUs of the in-process Ray (default: all); ignored on a cluster")
    r.set_defaults(fn=_cmd_search)

    an = sub.add_parser("analyze", help="tables, figures, LIME heatmaps and index.html from a results store",
                        description="Reads a results store (local or S3) and writes DIR/index.html (self-contained), "
                        "DIR/report.md, DIR/tables/ (CSV and JSON) and DIR/figures/. Only the search protocol's "
                        "choices reach the test numbers. No face appears in the report.")
    an.add_argument("results", metavar="RESULTS_URI", help="the --storage of a study: folder or s3://bucket/prefix")
    an.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    an.add_argument("--ratings", metavar="CSV", help="a CP-PAIN ratings.csv: adds the raters' agreement")
    an.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    an.add_argument("--no-lime", dest="no_lime", action="store_true", help="skip the LIME heatmaps")
    an.add_argument("--lime-samples", dest="lime_samples", type=int, default=300, metavar="N",
                    help="perturbed samples per explanation (default 300)")
    an.add_argument("--lime-images", dest="lime_images", type=int, default=8, metavar="N",
                    help="test images per predicted class and dataset (default 8)")
    an.add_argument("--lime-segments", dest="lime_segments", type=int, default=40, metavar="N",
                    help="SLIC superpixels per image (default 40)")
    an.add_argument("--lime-hide", dest="lime_hide", type=float, default=0.0, metavar="V",
                    help="value hidden superpixels take (default 0, black)")
    an.add_argument("--lime-all-weights", dest="lime_all_weights", action="store_true",
                    help="keep negative LIME weights too (default: positive only)")
    an.add_argument("--num-cpus", dest="num_cpus", type=int, help="CPUs of the in-process Ray (default: all)")
    an.set_defaults(fn=_cmd_analyze)

    ra = sub.add_parser("raters", help="how far raters agree: ICC(2,1), ICC(2,k) with 95%% CI per scale and stimulus",
                        description="Two-way random-effects, absolute-agreement ICCs (Shrout and Fleiss case 2, "
                        "intervals of McGraw and Wong) for the FACS score, NCAPC and Wong-Baker of a CP-PAIN "
                        "ratings.csv, overall and by stimulus (the paper's Table 4), with Fleiss's categories.")
    ra.add_argument("ratings", help="ratings.csv (columns documented in the README)")
    ra.add_argument("--json", action="store_true", help="print JSON")
    ra.set_defaults(fn=_cmd_raters)

    d = sub.add_parser("demo", help="the whole tool on the phantom, on this CPU: synth, prepare, search, analyze",
                       description="Renders the small phantom, prepares its shards, runs the demo study "
                       "(configs/demo.yaml) and writes the report; rerunning resumes where it stopped.")
    d.add_argument("--out", default="demo-out", help="working folder (default demo-out)")
    d.set_defaults(fn=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except PainsearchError as exc:
        print(f"painsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("painsearch: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
