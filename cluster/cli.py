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


def _cmd_demo(args: argparse.Namespace) -> int:
    from cluster.demo import run_demo

    return run_demo(args.out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="painsearch",
        description="Pain detection in face images at cluster scale: phantom data, preprocessing to Parquet "
        "shards, the ten networks of the study, and (in later releases) the Ray Tune study and its report.",
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

    d = sub.add_parser("demo", help="run what exists end to end on the phantom, on this CPU")
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
