"""Training images per second: fed from Parquet shards through Ray Data, against in-memory arrays.

The same model, batch and images, side by side in one run: `fit` on a tf.data pipeline over decoded
numpy arrays held in memory, and `fit` on the shards opened as a Ray Dataset, decoded by
`map_batches` and handed to Keras with `to_tf` (what each Ray Train worker does). The first epoch of
each is a warm-up and is not timed; the order alternates between repeats and the best is kept.
Writes the figures to BENCHMARKS.md between the `input_pipeline` markers.

    .venv/bin/python benchmarks/input_pipeline.py [--model weinet] [--size 64] [--epochs 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipelines.bootstrap  # noqa: E402,F401  (TensorFlow's environment, from its one home)

from benchmarks.report import machine, write_block  # noqa: E402
from cluster.local import ensure_ray  # noqa: E402
from pipelines.config import prepare_config  # noqa: E402
from pipelines.phantom.synth import sources, synth  # noqa: E402
from pipelines.shards.prepare import prepare  # noqa: E402
from pipelines.shards.read import open_dataset, read_table  # noqa: E402
from pipelines.training.data import decode_batch, decode_images  # noqa: E402


def timed_fit(model, make_data, epochs: int) -> float:
    """Seconds for `epochs` epochs after one untimed warm-up epoch."""
    model.fit(make_data(), epochs=1, verbose=0)
    t = time.perf_counter()
    for _ in range(epochs):
        model.fit(make_data(), epochs=1, verbose=0)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="weinet")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="painsearch-bench-input-"))
    try:
        phantom = work / "phantom"
        synth(phantom, scale=args.scale, seed=0)
        shards = str(work / "shards")
        prepare(prepare_config({
            "sources": sources(phantom),
            "out": shards, "engine": "local", "frames_per_subject_class": 0,
            "preprocess": {"size": args.size, "background": "grabcut"}}), log=lambda m: None)
        table = read_table(shards, columns=["image", "label"])
        n = table.num_rows
        x = decode_images(table.column("image").to_pylist(), args.size)
        y = table.column("label").to_numpy().astype("int64")
        # TensorFlow only now: prepare's detector loads torch, and torch must come first in one process
        import tensorflow as tf
        import tf_keras as keras

        from pipelines.models.build import build

        ensure_ray(num_cpus=2)
        ds = open_dataset(shards, columns=["image", "label"]).map_batches(
            decode_batch, fn_kwargs={"size": args.size}, batch_format="numpy").materialize()

        def memory():
            return tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch).prefetch(2)

        def shards_path():
            return ds.iterator().to_tf("x", "y", batch_size=args.batch, prefetch_batches=2)

        def fresh_model():
            keras.utils.set_random_seed(0)
            model = build(args.model, size=args.size)
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.SparseCategoricalCrossentropy())
            return model

        runs: dict[str, list[float]] = {"in-memory arrays": [], "Parquet shards via Ray Data": []}
        paths = [("in-memory arrays", memory), ("Parquet shards via Ray Data", shards_path)]
        for r in range(args.repeats):
            for label, make in paths if r % 2 == 0 else paths[::-1]:
                runs[label].append(timed_fit(fresh_model(), make, args.epochs))
                keras.backend.clear_session()
        best = {k: min(v) for k, v in runs.items()}
        base = best["in-memory arrays"]
        lines = [
            machine(f"TensorFlow {tf.__version__}"),
            f"Command: `.venv/bin/python benchmarks/input_pipeline.py --model {args.model} --size {args.size} "
            f"--epochs {args.epochs} --repeats {args.repeats}` ({n} phantom faces, batch {args.batch}, "
            f"{args.epochs} timed epochs after a warm-up, best of {args.repeats}, order alternated).",
            "",
            "| feed | seconds | images/s | vs in-memory |",
            "|---|---:|---:|---:|",
        ] + [f"| {k} | {v:.1f} | {n * args.epochs / v:.1f} | {base / v:.2f}x |" for k, v in best.items()]
        block = "\n".join(lines)
        print(block)
        write_block(Path(args.write), "input_pipeline", "Training input pipeline (issue: models and training)", block)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
