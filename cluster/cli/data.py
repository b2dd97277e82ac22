"""`painsearch data synth | prepare | inspect`: the phantom, the shards, the paper's Table 2."""

from __future__ import annotations

import argparse
import json
import os
from typing import get_args

from cluster.cli.options import help_for
from pipelines.config import Background, PrepareConfig, PreprocessConfig
from pipelines.errors import PainsearchError
from pipelines.progress import say


def _synth(args: argparse.Namespace) -> int:
    from pipelines.phantom.cp_shift import CPShift
    from pipelines.phantom.synth import synth

    info = synth(args.out, scale=args.scale, seed=args.seed, shift=CPShift.parse(args.cp_factors))
    counts = ", ".join(f"{k} {v}" for k, v in info["counts"].items())
    say(f"phantom ({args.scale}, seed {args.seed}, CP factors {info['cp_factors']}) written to {args.out}: {counts} images; "
          f"prepare it with `painsearch data prepare --config {os.path.join(args.out, 'prepare.yaml')}`")
    return 0


def prepare_settings(args: argparse.Namespace) -> PrepareConfig:
    from pathlib import Path

    from pipelines.config import load_prepare_config, merge, prepare_config

    overrides = {
        "out": args.out, "engine": args.engine, "workers": args.workers, "seed": args.seed,
        "allow_outside_paths": True if args.allow_outside_paths else None,
        "frames_per_subject_class": args.frames, "chunk_size": args.chunk_size,
        "preprocess": {"background": args.background, "size": args.size, "u2net_dir": args.u2net_dir},
        "sources": {"unbc": args.unbc, "mintpain": args.mintpain, "manifest": args.manifest, "cppain": args.cppain},
    }
    if args.config:
        return load_prepare_config(args.config, overrides)
    if not args.out:
        raise PainsearchError("`data prepare` needs --out URI (a folder or s3://bucket/prefix), or --config CONFIG.")
    return prepare_config(merge({"sources": {}}, overrides), base=Path.cwd(), where="the command line")


def _prepare(args: argparse.Namespace) -> int:
    from pipelines.shards.prepare import check_inputs, prepare

    cfg = prepare_settings(args)
    checked = check_inputs(cfg)  # before Ray starts: a mistake costs a second, not a cluster start
    if cfg.engine == "ray":
        from cluster.local import ensure_ray

        ensure_ray(num_cpus=max(cfg.workers * cfg.threads_per_worker, 1) if not os.environ.get("RAY_ADDRESS") else None)
    report = prepare(cfg, checked=checked)
    print(f"{'dataset':<12}{'subjects':>9}{'no pain':>9}{'pain':>7}{'total':>7}")
    for ds, c in report["datasets"].items():
        print(f"{ds:<12}{c['subjects']:>9}{c['no_pain']:>9}{c['pain']:>7}{c['rows']:>7}")
    tot = {k: sum(c[k] for c in report["datasets"].values()) for k in ("subjects", "no_pain", "pain", "rows")}
    print(f"{'PAIN-DB+CP':<12}{tot['subjects']:>9}{tot['no_pain']:>9}{tot['pain']:>7}{tot['rows']:>7}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from pipelines.shards.breakdown import breakdown

    table = breakdown(args.uri)
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(f"{'dataset':<12}{'subjects':>9}{'levels':>8}{'no pain':>9}{'pain':>7}{'total':>7}")
    for row in table["datasets"]:
        print(f"{row['dataset']:<12}{row['subjects']:>9}{row['levels']:>8}{row['no_pain']:>9}{row['pain']:>7}{row['total']:>7}")
    t = table["pain_db"]
    print(f"{'PAIN-DB':<12}{t['subjects']:>9}{'':>8}{t['no_pain']:>9}{t['pain']:>7}{t['total']:>7}")
    return 0


def add(sub) -> None:
    from pipelines.phantom.cp_shift import FACTORS
    from pipelines.phantom.synth import SCALES

    data = sub.add_parser("data", help="make, prepare and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="STEP")

    s = dsub.add_parser("synth", help="render the phantom datasets in their native layouts")
    s.add_argument("out", help="folder to write (new, empty, or an earlier phantom)")
    s.add_argument("--scale", default="tiny", choices=list(SCALES), help="how much to render (default tiny)")
    s.add_argument("--seed", type=int, default=0, help="the same seed renders the same images (default 0)")
    s.add_argument("--cp-factors", dest="cp_factors", default="all", metavar="LIST",
                   help=f"how CP faces differ from the sources, after the paper's Discussion: all, none, or some of "
                        f"{', '.join(FACTORS)}, comma-separated (default all)")
    s.set_defaults(fn=_synth)

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
    pr.add_argument("--background", choices=list(get_args(Background)),
                    help=help_for(PreprocessConfig, "background", "background removal"))
    pr.add_argument("--size", type=int, help=help_for(PreprocessConfig, "size"))
    pr.add_argument("--u2net-dir", dest="u2net_dir", metavar="DIR", help=help_for(PreprocessConfig, "u2net_dir"))
    pr.add_argument("--frames", type=int, metavar="N", help=help_for(PrepareConfig, "frames_per_subject_class",
                                                                      "frames per subject and class from video sources"))
    pr.add_argument("--workers", type=int, metavar="N", help=help_for(PrepareConfig, "workers"))
    pr.add_argument("--engine", choices=["ray", "local"], help=help_for(PrepareConfig, "engine",
                                                                        "ray, or a plain in-process loop"))
    pr.add_argument("--chunk-size", dest="chunk_size", type=int, metavar="N", help=help_for(PrepareConfig, "chunk_size"))
    pr.add_argument("--seed", type=int, help=help_for(PrepareConfig, "seed", "sampling seed"))
    pr.add_argument("--allow-outside-paths", dest="allow_outside_paths", action="store_true",
                    help=help_for(PrepareConfig, "allow_outside_paths"))
    pr.set_defaults(fn=_prepare)

    i = dsub.add_parser("inspect", help="the PAIN-DB breakdown of prepared shards (the paper's Table 2)")
    i.add_argument("uri", help="the shards' folder or s3://bucket/prefix")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(fn=_inspect)
