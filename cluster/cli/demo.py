"""`painsearch demo [--out DIR]`: the whole tool on the phantom, on this CPU (cluster.demo runs it)."""

from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> int:
    from cluster.demo import run_demo

    return run_demo(args.out)


def add(sub) -> None:
    d = sub.add_parser("demo", help="the whole tool on the phantom, on this CPU: synth, prepare, search, analyze",
                       description="Renders the small phantom, prepares its shards, runs the demo study "
                       "(configs/demo.yaml) and writes the report; rerunning resumes where it stopped.")
    d.add_argument("--out", default="demo-out", help="working folder (default demo-out)")
    d.set_defaults(fn=_demo)
