"""Images per second of `painsearch data prepare` (background none) against a bare decode + MTCNN loop.

Side by side in one run, on the same files: the bare loop in this process (one torch thread, as each
prepare worker uses), then `prepare` through
Ray Data with 1 and 2 workers (and the in-process engine), each into a fresh folder, twice, best of two.
Writes the figures to BENCHMARKS.md between the `preprocess` markers.

    .venv/bin/python benchmarks/preprocess.py [--scale small] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cluster.local import ensure_ray  # noqa: E402
from pipelines.config import PreprocessConfig, prepare_config  # noqa: E402
from pipelines.datasets.phantom import synth  # noqa: E402
from pipelines.prepare import plan, prepare, read_sources  # noqa: E402
from pipelines.preprocess import FaceDetector, decode  # noqa: E402


def bare_loop(paths: list[str], cfg: PreprocessConfig) -> float:
    """What one process does without painsearch: read, decode, detect."""
    detector = FaceDetector(cfg, threads=1)
    t = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            rgb = decode(f.read(), cfg.max_image_pixels)
        try:
            detector.detect(rgb)
        except Exception:
            pass
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="painsearch-bench-"))
    try:
        phantom = work / "phantom"
        synth(phantom, scale=args.scale, seed=0)
        sources = {"unbc": str(phantom / "unbc"), "mintpain": str(phantom / "mintpain"),
                   "manifest": str(phantom / "delaware" / "manifest.csv"), "cppain": str(phantom / "cppain")}

        def cfg(out: str, engine: str, workers: int):
            return prepare_config({"sources": sources, "out": out, "engine": engine, "workers": workers,
                                   "frames_per_subject_class": 0, "chunk_size": 32,
                                   "preprocess": {"size": 64, "background": "none"}})

        base = cfg(str(work / "plan"), "local", 1)
        key, listings = read_sources(base)
        paths = [i["path"] for c in plan(base, key, listings).chunks for i in c["items"]]
        n = len(paths)
        ensure_ray(num_cpus=2)
        runs = {"bare loop (1 process)": [], "prepare, Ray Data, 1 worker": [], "prepare, Ray Data, 2 workers": [],
                "prepare, in-process engine": []}
        for r in range(args.repeats):
            runs["bare loop (1 process)"].append(bare_loop(paths, base.preprocess))
            for label, engine, workers in (("prepare, Ray Data, 1 worker", "ray", 1),
                                           ("prepare, Ray Data, 2 workers", "ray", 2),
                                           ("prepare, in-process engine", "local", 1)):
                out = work / f"out-{engine}-{workers}-{r}"
                t = time.perf_counter()
                prepare(cfg(str(out), engine, workers), log=lambda m: None)
                runs[label].append(time.perf_counter() - t)
                shutil.rmtree(out)
        best = {k: min(v) for k, v in runs.items()}
        bare = best["bare loop (1 process)"]
        lines = [
            "<!-- preprocess:start -->",
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'}: {os.cpu_count()} cores, "
            f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, no GPU.",
            f"Command: `.venv/bin/python benchmarks/preprocess.py --scale {args.scale} --repeats {args.repeats}` "
            f"({n} phantom images, every frame, background `none`, 64 px; best of {args.repeats}; "
            "`prepare` times include planning, hashing, actor start-up and writing shards).",
            "",
            "| path | seconds | images/s | vs bare loop |",
            "|---|---:|---:|---:|",
        ]
        for k, v in best.items():
            lines.append(f"| {k} | {v:.1f} | {n / v:.1f} | {bare / v:.2f}x |")
        lines.append("<!-- preprocess:end -->")
        block = "\n".join(lines)
        print(block)
        target = Path(args.write)
        text = target.read_text() if target.exists() else "# Benchmarks\n"
        if "<!-- preprocess:start -->" in text:
            head, rest = text.split("<!-- preprocess:start -->", 1)
            text = head + block + rest.split("<!-- preprocess:end -->", 1)[1]
        else:
            text = text.rstrip() + "\n\n## Preprocessing throughput (issue: data pipeline)\n\n" + block + "\n"
        target.write_text(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
