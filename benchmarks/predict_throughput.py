"""Faces per second of `painsearch predict` on this CPU, against a bare loop of the same steps.

A model is trained briefly on the tiny phantom (weinet, 32 px; what it learned does not matter here), then
both paths score the same phantom images: `predict` (the Preprocessor, then the network in batches) and a
bare loop (decode, MTCNN, crop, GrabCut, resize, then the network one face at a time). Both are timed after
their models are loaded, best of `--repeats`, in alternation. Writes BENCHMARKS.md (`predict`).

    .venv/bin/python benchmarks/predict_throughput.py [--images 120] [--repeats 2]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.bootstrap import torch_first  # noqa: E402

torch_first()  # this process detects faces, then runs the network

import numpy as np  # noqa: E402

from benchmarks.report import machine, write_block  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    from analysis.chosen_model import ChosenModel
    from analysis.predict import predict
    from pipelines.config import PreprocessConfig, train_config
    from pipelines.models.build import build
    from pipelines.phantom.synth import synth
    from pipelines.preprocess.background import background_remover
    from pipelines.preprocess.decode import decode
    from pipelines.preprocess.faces import FaceDetector, square_crop

    work = Path(tempfile.mkdtemp(prefix="painsearch-predict-"))

    atexit.register(shutil.rmtree, work, True)  # what the benchmark wrote goes with it
    synth(work / "phantom", scale="small", seed=0)
    images = sorted((work / "phantom").rglob("*.jpg"))[: args.images]
    cfg = train_config({"model": "weinet", "size": 32})
    model = build("weinet", size=32)
    weights = work / "model.h5"
    model.save_weights(str(weights))
    pre = {"size": 64, "background": "grabcut", "margin": 0.2, "min_confidence": 0.9, "multiple_faces": "largest",
           "detect_max_side": 1024, "max_image_pixels": 120_000_000}

    class Local(ChosenModel):
        def load(self):
            return model

    chosen = Local(name="weinet (benchmark)", train=cfg.model_dump(), preprocess=pre, source={})
    detector = FaceDetector(PreprocessConfig(**pre))
    remove = background_remover(PreprocessConfig(**pre))

    def bare() -> int:
        from PIL import Image

        n = 0
        for path in images:
            try:
                rgb = decode(path.read_bytes(), pre["max_image_pixels"])
                crop, _, box = square_crop(rgb, detector.detect(rgb), pre["margin"])
            except Exception:  # noqa: BLE001  (no face: what predict lists as rejected)
                continue
            k = pre["size"] / crop.shape[0]
            small = np.asarray(Image.fromarray(crop).resize((pre["size"], pre["size"]), Image.LANCZOS))
            face, _ = remove(small, tuple(v * k for v in box))
            x = np.asarray(Image.fromarray(face).resize((32, 32), Image.BILINEAR), dtype=np.float32)[None]
            model(x, training=False)
            n += 1
        return n

    def batched() -> int:
        return len(predict(chosen, [str(p) for p in images], names="raw"))  # the scoring alone: no mapping written

    predict(chosen, [str(images[0])], names="raw")  # both paths warm: the detector, the model, TensorFlow's first call
    bare_s, batched_s, faces = [], [], 0
    for i in range(args.repeats):
        for name, fn, times in (("bare", bare, bare_s), ("predict", batched, batched_s))[:: 1 if i % 2 == 0 else -1]:
            t0 = time.perf_counter()
            faces = fn()
            times.append(time.perf_counter() - t0)
    lines = [
        machine(),
        f"Command: `.venv/bin/python benchmarks/predict_throughput.py --images {args.images} --repeats {args.repeats}` "
        f"({len(images)} phantom images of the `small` scale, {faces} with a face; faces stored at 64 px, GrabCut, "
        f"weinet at 32 px; best of {args.repeats}, the paths alternated).",
        "",
        "| path | seconds | faces/s | vs bare loop |",
        "|---|---:|---:|---:|",
        f"| bare loop (same steps, one face at a time) | {min(bare_s):.1f} | {faces / min(bare_s):.1f} | 1.00x |",
        f"| `painsearch predict` (batched) | {min(batched_s):.1f} | {faces / min(batched_s):.1f} | "
        f"{min(bare_s) / min(batched_s):.2f}x |",
        "",
        "Face detection (MTCNN on the CPU) is most of either path's time; the network is a small part at 32 px, so "
        "batching it gains little here and more with a larger network or on a GPU.",
    ]
    block = "\n".join(lines)
    print(block)
    write_block(args.out, "predict", "Predict throughput", block)


if __name__ == "__main__":
    main()
