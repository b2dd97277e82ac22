"""Host work per training epoch: building and draining one epoch's input at the paper's 224 px, side by side.

What a trial's loop does on the host each epoch before and around the GPU's steps: choose the epoch's order,
build its `tf.data` input and hand every batch over. Compared in one run, alternating, on the same images:
- "float32 copies": what the loop did before, kept here as the baseline (the fold cached as float32; each epoch
  copies the whole array into the new order, and `from_tensor_slices` copies it again);
- "uint8 gather": `pipelines.training.loop.numpy_batches` on the fold cached as uint8, as the inline runner
  keeps it: the images become one tensor once per trial, an epoch shuffles indices and gathers each batch
  (the cast to float32 runs in the model, on the device).
The model's steps are left out: they are the same in both. The per-trial setup of the second (one tensor per
trial) is timed apart. Writes the figures to BENCHMARKS.md between the `epoch_input` markers.

    .venv/bin/python benchmarks/epoch_input.py [--images 1000] [--size 224] [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipelines.bootstrap  # noqa: E402,F401  (TensorFlow's environment, from its one home)
from benchmarks.report import machine, write_block  # noqa: E402


def float32_copies(x, y, batch: int, seed: int):
    """The baseline: a new float32 copy of the fold in every epoch's order."""
    import numpy as np
    import tensorflow as tf

    def epoch_data(epoch: int):
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        return tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(batch)

    return epoch_data


def drain(data) -> int:
    n = 0
    for images, _ in data:
        n += int(images.shape[0])
    return n


def main() -> None:
    import numpy as np

    from pipelines.training.loop import numpy_batches

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, args.images).astype(np.int64)
    as_float = pixels.astype(np.float32)
    import tensorflow as tf

    tf.constant(0) + 1  # TensorFlow's runtime starts once per process, not once per trial
    t = time.perf_counter()
    gather = numpy_batches(pixels, labels, args.batch, seed=0)
    setup = time.perf_counter() - t
    baseline = float32_copies(as_float, labels, args.batch, seed=0)
    drain(gather(0)), drain(baseline(0))  # warm-up: tf.data's first pipeline builds its functions
    times: dict[str, list[float]] = {"float32 copies": [], "uint8 gather": []}
    for r in range(args.repeats):
        pairs = [("float32 copies", baseline), ("uint8 gather", gather)]
        for name, epochs in pairs if r % 2 == 0 else pairs[::-1]:
            t = time.perf_counter()
            assert drain(epochs(r + 1)) == args.images
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    ratio = best["float32 copies"] / best["uint8 gather"]
    mib = {"float32 copies": as_float.nbytes / 2**20, "uint8 gather": pixels.nbytes / 2**20}
    rows = [f"| {k} | {mib[k]:.0f} | {best[k]:.3f} | {best[k] / args.images * 1e3:.3f} |" for k in times]
    block = "\n".join([
        machine(),
        f"Command: `.venv/bin/python benchmarks/epoch_input.py --images {args.images} --size {args.size} "
        f"--batch {args.batch} --repeats {args.repeats}`",
        "",
        "| input of one epoch | fold in memory (MiB) | seconds per epoch (best) | ms per image |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Host work per epoch: **{ratio:.1f}x less** with the uint8 gather (best of {args.repeats}, alternating). "
        f"Its once-per-trial setup (the fold as one tensor): {setup:.3f} s.",
    ])
    write_block(Path(args.write), "epoch_input", "Host work per training epoch", block)
    print(block)


if __name__ == "__main__":
    main()
