"""`painsearch gpu-check`: proves a GPU machine (or a cluster's GPU node) ready for the study, and times a trial."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from pipelines.progress import say


def _gpu_check(args: argparse.Namespace) -> int:
    from pipelines.training import gpu_check

    report = gpu_check.run(args.models, args.size, args.steps, args.batch, expect_gpu=not args.cpu,
                           deterministic=not args.nondeterministic)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str) if args.json else gpu_check.table(report))
    say(f"gpu-check: report written to {out}")
    gpu_check.require_ready(report)
    return 0


def add(sub) -> None:
    g = sub.add_parser("gpu-check", help="prove this machine's GPU ready and time what a trial pays on it",
                       description="Report what TensorFlow sees (GPUs, CUDA, cuDNN, the architectures it has compiled "
                       "kernels for, memory growth, mixed precision), time CUDA's first kernel compilation apart, then "
                       "run every network for a few steps at its paper size with the paper's augmentation, half its "
                       "backbone frozen and determinism on, timing build, trace, step, images/s, the host's work per "
                       "epoch and a checkpoint. Writes a JSON report and prints a table; exits 2 when a GPU was "
                       "expected and TensorFlow sees none, or a network holds an op a GPU refuses under determinism. "
                       "On a cluster: `ray job submit --entrypoint-num-gpus 1 -- painsearch gpu-check`.")
    g.add_argument("--models", nargs="+", metavar="NAME", help="only these networks (default: all ten)")
    g.add_argument("--size", type=int, help="input side for every network (default: each one's paper size)")
    g.add_argument("--steps", type=int, default=10, help="training steps timed per network (default 10)")
    g.add_argument("--batch", type=int, default=32, help="batch size (default 32, the study's)")
    g.add_argument("--cpu", action="store_true", help="no GPU expected: time this machine's CPU")
    g.add_argument("--nondeterministic", action="store_true",
                   help="time with TensorFlow's op determinism off (train.deterministic: false)")
    g.add_argument("--out", default="gpu-check.json", help="the JSON report (default gpu-check.json)")
    g.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    g.set_defaults(fn=_gpu_check)
