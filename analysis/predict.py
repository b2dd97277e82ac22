"""`painsearch predict`: a study's model on new faces: images, folders of images, videos.

Outputs may leave the machine, and file names often name people (a patient's name, a record number), so by
default every input appears in them by a pseudonym (`in-` and ten hex digits): the `input` column, the rejected
inputs, the plots' and explanations' file names. The mapping from pseudonym to path stays beside the inputs, in
`painsearch-ids.csv` in the folder that holds them all (or `mapping`); a later run over the same inputs reuses
their pseudonyms. `names="raw"` writes the paths as given instead.

Every input goes through the preprocessing its model's shards had (MTCNN, the multiple-face policy,
background removal, size), then the network, in batches. Writes `predictions.csv` and `.parquet`
(input, frame and time for videos, face box, face confidence, pain probability, label: pain at or above the
model's threshold, chosen on its search's validation split), `predict_report.json` (the threshold; counts; every input or frame without a usable face, with its reason, as `prepare`
lists them), a plot of the pain probability over time for each video, and with `explain` a LIME map over
each face with the landmark-normalised map beside it (the user's own images: showing them is the point).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.chosen_model import ChosenModel
from pipelines.errors import PainsearchError, Rejection
from pipelines.labels import CLASS_NAMES
from pipelines.sources.base import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# A pain expression lasts about half a second to a few seconds: five frames a second catch it without
# scoring thirty near-copies.
FRAMES_PER_SECOND = 5.0
MAPPING_FILE = "painsearch-ids.csv"
NAMES = ("pseudonym", "raw")
COLUMNS = ["input", "frame", "time_s", "box_x0", "box_y0", "box_x1", "box_y1", "face_confidence", "prob_pain", "label"]


def inputs_of(paths: list[str]) -> list[Path]:
    """Images and videos named or inside named folders, in order; a path that is neither is refused here."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise PainsearchError(f"{raw} does not exist; pass images, folders of images or videos "
                                  f"({', '.join(VIDEO_SUFFIXES)}).")
    return out


def frames(path: Path, every: int | None) -> Iterator[tuple[int | None, float | None, np.ndarray | bytes]]:
    """(frame, time in s, RGB array) for a video's sampled frames; (None, None, file bytes) for an image."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        yield None, None, path.read_bytes()
        return
    import cv2

    video = cv2.VideoCapture(str(path))
    if not video.isOpened():
        raise Rejection("OpenCV could not open it as a video")
    fps = video.get(cv2.CAP_PROP_FPS) or 25.0
    step = every or max(1, round(fps / FRAMES_PER_SECOND))
    index = 0
    try:
        while video.grab():  # every frame is read past; only the sampled ones are decoded into pixels
            if index % step == 0:
                ok, bgr = video.retrieve()
                if ok:
                    yield index, index / fps, bgr[..., ::-1].copy()
            index += 1
    finally:
        video.release()
    if index == 0:
        raise Rejection("a video without a frame OpenCV could read")


def default_mapping(files: list[Path]) -> Path:
    """Where the pseudonyms' mapping is kept: in the deepest folder that holds every input."""
    folders = [str(f.resolve().parent) for f in files] or [str(Path.cwd())]
    return Path(os.path.commonpath(folders)) / MAPPING_FILE


def pseudonyms(files: list[Path], mapping: Path) -> dict[Path, str]:
    """A pseudonym per input, those of inputs already in `mapping` reused; the mapping written back with the new
    ones (the whole file replaced at once)."""
    if not files:
        return {}
    known: dict[str, str] = {}
    if mapping.is_file():
        try:
            old = pd.read_csv(mapping, dtype=str)
            known = dict(zip(old["path"], old["pseudonym"]))
        except (ValueError, KeyError, pd.errors.ParserError) as exc:
            raise PainsearchError(f"{mapping} is not a mapping `painsearch predict` wrote ({exc}); move it away, or "
                                  f"name another file with --mapping.") from exc
    taken = set(known.values())
    out: dict[Path, str] = {}
    for f in files:
        key = str(f.resolve())
        if key not in known:
            while (name := f"in-{secrets.token_hex(5)}") in taken:
                pass
            known[key] = name
            taken.add(name)
        out[f] = known[key]
    try:
        mapping.parent.mkdir(parents=True, exist_ok=True)
        part = mapping.with_name(f".{mapping.name}.{os.getpid()}.tmp")
        # it names people's files: for this user only, from its first byte
        with os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", newline="") as f:
            pd.DataFrame({"pseudonym": list(known.values()), "path": list(known)}).to_csv(f, index=False)
        os.replace(part, mapping)
    except OSError as exc:
        raise PainsearchError(f"The pseudonyms' mapping cannot be written to {mapping} ({exc.strerror or exc}); name a "
                              f"writable file with --mapping, or pass --names raw to write the inputs' paths.") from exc
    return out


def predict(chosen: ChosenModel, paths: list[str], out: str | Path | None = None, explain: bool = False,
            every: int | None = None, progress: Callable[[int, int, float], None] | None = None,
            names: str = "pseudonym", mapping: str | Path | None = None) -> pd.DataFrame:
    """Score every face of `paths`; returns the predictions (and writes the outputs under `out`, if given, the whole
    folder replaced at once). Inputs are named by pseudonyms unless `names` is "raw"."""
    if names not in NAMES:
        raise PainsearchError(f"names must be one of {', '.join(NAMES)}, not {names!r}.")
    if out is not None:
        from pipelines.storage.folders import check_target

        check_target(out)  # before any input is scored, not after
    from pipelines.bootstrap import torch_first

    torch_first()  # this process detects faces, then runs the network
    from pipelines.config import PreprocessConfig
    from pipelines.preprocess.preprocessor import Preprocessor
    from pipelines.training.data import decode_images
    from pipelines.training.loop import INFERENCE_BATCH, predict as forward

    settings = {k: v for k, v in chosen.preprocess.items() if k in PreprocessConfig.model_fields}
    pre = Preprocessor(PreprocessConfig.model_validate(settings))
    model = chosen.load()
    files = inputs_of(paths)
    if names == "raw":
        name_of = {f: str(f) for f in files}
    else:
        name_of = pseudonyms(files, Path(mapping) if mapping else default_mapping(files))
    rows: list[dict[str, Any]] = []
    faces: list[bytes] = []
    landmarks: list[list[float]] = []
    rejected: list[dict[str, Any]] = []
    started = time.time()
    for n, path in enumerate(files):
        try:
            for frame, t, content in frames(path, every):
                try:
                    done = pre(content) if isinstance(content, bytes) else pre.process(content)
                except Rejection as exc:
                    rejected.append({"input": name_of[path], "frame": frame, "reason": str(exc)})
                    continue
                rows.append({"input": name_of[path], "frame": frame, "time_s": t, "box_x0": done.box[0],
                             "box_y0": done.box[1], "box_x1": done.box[2], "box_y1": done.box[3],
                             "face_confidence": done.confidence})
                faces.append(done.image)
                landmarks.append(done.landmarks)
        except Rejection as exc:
            rejected.append({"input": name_of[path], "frame": None, "reason": str(exc)})
        except OSError as exc:
            rejected.append({"input": name_of[path], "frame": None, "reason": f"could not read it ({exc.strerror or exc})"})
        if progress:
            progress(n + 1, len(files), time.time() - started)
    probs = np.zeros((0, 2), np.float32)
    if faces:
        probs = np.concatenate([forward(model, decode_images(faces[i:i + INFERENCE_BATCH], chosen.size), INFERENCE_BATCH)
                                for i in range(0, len(faces), INFERENCE_BATCH)])
    table = pd.DataFrame(rows, columns=COLUMNS[:-2])
    table["prob_pain"] = probs[:, 1] if len(probs) else []
    table["label"] = [CLASS_NAMES[int(p >= chosen.threshold)] for p in table["prob_pain"]]
    if out is not None:
        from pipelines.storage.folders import written_whole

        with written_whole(out) as work:  # an earlier output there stays until this one is complete
            write(work, table, rejected, chosen, started, names)
            if explain and faces:
                explain_faces(work, model, chosen, faces, landmarks, probs, table)
    return table


def write(out: Path, table: pd.DataFrame, rejected: list[dict[str, Any]], chosen: ChosenModel, started: float,
          names: str = "pseudonym") -> None:
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "predictions.csv", index=False)
    table.to_parquet(out / "predictions.parquet", index=False)
    report = {"model": chosen.name, "faces": len(table), "inputs": int(table["input"].nunique()) if len(table) else 0,
              "threshold": {"value": chosen.threshold, "from": chosen.threshold_from,
                            "rule": "label is pain where prob_pain >= value"},
              "inputs_named_by": names if names == "raw" else f"pseudonyms; the mapping is {MAPPING_FILE} beside the inputs "
                                                              "(or the --mapping file), not in this folder",
              "rejected": rejected, "seconds": round(time.time() - started, 1), "preprocessing": chosen.preprocess}
    (out / "predict_report.json").write_text(json.dumps(report, indent=1, default=str))
    videos = table[table["time_s"].notna()] if len(table) else table
    if len(videos):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for k, (name, g) in enumerate(videos.groupby("input", sort=False)):
            fig, ax = plt.subplots(figsize=(7, 2.8))
            ax.plot(g["time_s"], g["prob_pain"], marker=".", lw=1)
            ax.axhline(chosen.threshold, color="grey", lw=0.8, ls="--")  # the model's threshold
            ax.set_ylim(0, 1)
            ax.set_xlabel("time (s)")
            ax.set_ylabel("pain probability")
            ax.set_title(Path(name).name, fontsize=9)
            fig.tight_layout()
            # a pseudonym names one input; raw names of two folders may be the same, so they are numbered
            stem = Path(name).stem if names != "raw" else f"{k:03d}_{Path(name).stem}"
            fig.savefig(out / f"{stem}_pain_over_time.png", dpi=100)
            plt.close(fig)


def explain_faces(out: Path, model, chosen: ChosenModel, faces: list[bytes], landmarks: list[list[float]],
                  probs: np.ndarray, table: pd.DataFrame) -> None:
    """A LIME map over each face (the explained class: the predicted one) and the landmark-normalised map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.config import LimeConfig
    from analysis.face_space import CANON, scaled_landmarks, stretched, to_canonical
    from analysis.lime_heatmaps import lime_map
    from pipelines.training.data import decode_images, stored_size

    folder = out / "explanations"
    folder.mkdir(exist_ok=True)
    size = chosen.size
    x = decode_images(faces, size)
    settings = LimeConfig()
    for i, (img, pts) in enumerate(zip(x, landmarks)):
        label = int(probs[i, 1] >= chosen.threshold)  # the class predict gave it
        raw = lime_map(model, img, label, settings)
        canonical = to_canonical(raw, scaled_landmarks(pts, stored_size(faces[i]), size))
        fig, axes = plt.subplots(1, 2, figsize=(5.4, 2.8))
        axes[0].imshow(img.astype(np.uint8))
        axes[0].imshow(stretched(raw), cmap="inferno", alpha=0.5)
        axes[0].set_title(f"{CLASS_NAMES[label]} {probs[i, 1]:.2f}", fontsize=8)
        axes[1].imshow(stretched(np.nan_to_num(canonical)), cmap="inferno", extent=(0, CANON, CANON, 0))
        axes[1].set_title("in the common face", fontsize=8)
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        row = table.iloc[i]
        frame = "" if pd.isna(row["frame"]) else f"_frame{int(row['frame'])}"
        fig.savefig(folder / f"{i:04d}_{Path(row['input']).stem}{frame}.png", dpi=100)
        plt.close(fig)
