"""Images per second of `painsearch data prepare` (background none) against a bare decode + MTCNN loop.

Side by side in one run, on the same files. The bare loop is what a user would run without painsearch:
one fresh Python process that imports the detector, loads MTCNN (one torch thread, as each prepare
worker uses) and reads, decodes and detects every file; it is timed from launch to exit, because
`prepare` is charged for its own start-up too (its actors import torch and load MTCNN). `prepare`
runs through Ray Data with 1 and 2 workers and through the in-process engine, each into a fresh
folder; the order rotates between repeats and the best of each is kept.
The default input, `pain_db`, is a phantom the size of PAIN-DB after the paper's sampling (20 frames
per subject and class from 25 UNBC and 20 MInt PAIN subjects, 240 Delaware pairs) plus a CP set: the
workload `prepare` exists for, so its fixed start-up cost weighs what it weighs in real use.
Writes the figures to BENCHMARKS.md between the `preprocess` markers.

    .venv/bin/python benchmarks/preprocess.py [--scale pain_db|tiny|small] [--repeats 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipelines.bootstrap  # noqa: E402,F401  (TensorFlow's environment, from its one home)

from cluster.local import ensure_ray  # noqa: E402
from pipelines.config import PreprocessConfig, prepare_config  # noqa: E402
from pipelines.phantom.synth import SCALES, Scale, synth  # noqa: E402
from pipelines.phantom.synth import sources as phantom_sources  # noqa: E402
from pipelines.shards.prepare import plan, prepare, read_sources  # noqa: E402
from benchmarks.report import machine, write_block  # noqa: E402


# PAIN-DB as the paper sampled it: UNBC 25 x 2 x 20, MInt PAIN 20 x 2 x 20, Delaware 240 x 2; CP 53 x 2 x 2.
PAIN_DB = Scale(25, 2, 20, (320, 240), 20, 2, 4, 5, (640, 360), 240, (300, 400), 53, 212, (480, 360))


def bare_loop(list_file: Path, cfg: PreprocessConfig) -> float:
    """Seconds for a fresh process to start, load MTCNN, and read, decode and detect every listed file."""
    t = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--bare-loop", str(list_file), "--max-pixels", str(cfg.max_image_pixels)],
                   check=True)
    return time.perf_counter() - t


def _bare_loop_process(list_file: str, max_pixels: int) -> None:
    from pipelines.config import PreprocessConfig
    from pipelines.errors import Rejection
    from pipelines.preprocess.decode import decode
    from pipelines.preprocess.faces import FaceDetector

    detector = FaceDetector(PreprocessConfig(background="none", max_image_pixels=max_pixels), threads=1)
    for path in Path(list_file).read_text().splitlines():
        with open(path, "rb") as f:
            rgb = decode(f.read(), max_pixels)
        try:
            detector.detect(rgb)
        except Rejection:
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="pain_db", choices=["pain_db", *SCALES])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--bare-loop", help=argparse.SUPPRESS)
    ap.add_argument("--max-pixels", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_loop:
        _bare_loop_process(args.bare_loop, args.max_pixels)
        return
    work = Path(tempfile.mkdtemp(prefix="painsearch-bench-"))
    try:
        phantom = work / "phantom"
        synth(phantom, scale=PAIN_DB if args.scale == "pain_db" else args.scale, seed=0)
        sources = phantom_sources(phantom)

        def cfg(out: str, engine: str, workers: int):
            return prepare_config({"sources": sources, "out": out, "engine": engine, "workers": workers,
                                   "frames_per_subject_class": 0, "chunk_size": 32,
                                   "preprocess": {"size": 64, "background": "none"}})

        base = cfg(str(work / "plan"), "local", 1)
        key, listings = read_sources(base)
        paths = [i["path"] for c in plan(base, key, listings).chunks for i in c["items"]]
        n = len(paths)
        list_file = work / "files.txt"
        list_file.write_text("\n".join(paths))
        ensure_ray(num_cpus=2)
        runs = {"bare loop (1 process)": [], "prepare, Ray Data, 1 worker": [], "prepare, Ray Data, 2 workers": [],
                "prepare, in-process engine": []}
        paths_run = [("prepare, Ray Data, 1 worker", "ray", 1), ("prepare, Ray Data, 2 workers", "ray", 2),
                     ("prepare, in-process engine", "local", 1), ("bare loop (1 process)", "bare", 1)]
        for r in range(args.repeats):
            for label, engine, workers in paths_run[r % 4:] + paths_run[: r % 4]:
                if engine == "bare":
                    runs[label].append(bare_loop(list_file, base.preprocess))
                    continue
                out = work / f"out-{engine}-{workers}-{r}"
                t = time.perf_counter()
                prepare(cfg(str(out), engine, workers), log=lambda m: None)
                runs[label].append(time.perf_counter() - t)
                shutil.rmtree(out)
        best = {k: min(v) for k, v in runs.items()}
        bare = best["bare loop (1 process)"]
        lines = [
            machine(),
            f"Command: `.venv/bin/python benchmarks/preprocess.py --scale {args.scale} --repeats {args.repeats}` "
            f"({n} phantom images, every frame, background `none`, 64 px; best of {args.repeats}, order rotated; "
            "every path is charged for its start-up: the bare loop's process, `prepare`'s actors).",
            "",
            "| path | seconds | images/s | vs bare loop |",
            "|---|---:|---:|---:|",
        ] + [f"| {k} | {v:.1f} | {n / v:.1f} | {bare / v:.2f}x |" for k, v in best.items()]
        block = "\n".join(lines)
        print(block)
        write_block(Path(args.write), "preprocess", "Preprocessing throughput (issue: data pipeline)", block)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
