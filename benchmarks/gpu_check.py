"""`painsearch gpu-check --cpu` on this machine: what a trial pays per network, the CPU's figures beside which a GPU
machine's run of `painsearch gpu-check` reads. Every network of the registry, at a reduced size (the CPU would
take hours at the paper's), with the paper's augmentation, half its backbone frozen and determinism on.
Writes BENCHMARKS.md (`gpu_check`); the JSON report goes to a temporary folder that is removed.

    .venv/bin/python benchmarks/gpu_check.py [--size 64] [--steps 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipelines.bootstrap  # noqa: E402,F401

from benchmarks.report import machine, write_block  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    from pipelines.training import gpu_check

    report = gpu_check.run(size=args.size, steps=args.steps, batch=args.batch, expect_gpu=False)
    command = f"`.venv/bin/python benchmarks/gpu_check.py --size {args.size} --steps {args.steps} --batch {args.batch}`"
    block = "\n".join([
        machine(f"TensorFlow {report['tensorflow']['tensorflow']}"),
        f"Command: {command} (it runs `painsearch gpu-check --cpu` in-process). Each network at {args.size} px "
        f"(at least its minimum), batch {args.batch}, {args.steps} steps timed after the traced one; half the "
        "backbone frozen where there is one, augmentation and determinism on, mixed precision off (no GPU). On a GPU "
        "machine `painsearch gpu-check` prints the same table at paper size.",
        "", "```", gpu_check.table(report), "```"])
    write_block(ROOT / "BENCHMARKS.md", "gpu_check", "GPU readiness check (its CPU figures)", block)
    print(gpu_check.table(report))


if __name__ == "__main__":
    main()
