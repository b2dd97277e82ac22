"""The face: MTCNN (facenet-pytorch) with the paper's one-face-per-image rule, and the square crop around it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipelines.config import PreprocessConfig
from pipelines.errors import PainsearchError, Rejection

# MTCNN's first network needs at least 12 px after its own pyramid's first scale (12 / 20 of the image, with
# its default minimum face of 20 px): a shorter side makes its torch.cat fail instead of finding no face.
MIN_DETECT_SIDE = 20


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in source pixels
    confidence: float
    landmarks: np.ndarray  # 5x2: eyes, nose, mouth corners


class FaceDetector:
    """facenet-pytorch's MTCNN with the paper's one-face-per-image rule."""

    def __init__(self, cfg: PreprocessConfig, threads: int = 1) -> None:
        import sys

        if "tensorflow" in sys.modules and "torchvision" not in sys.modules:
            raise PainsearchError(
                "Face detection cannot start in a process that loaded TensorFlow before torchvision (that "
                "order crashes); call pipelines.bootstrap.torch_first() before TensorFlow is imported, or run "
                "prepare in its own process."
            )
        import torch
        from facenet_pytorch import MTCNN

        torch.set_num_threads(threads)
        self.cfg = cfg
        self.mtcnn = MTCNN(keep_all=True, device="cpu")

    def detect(self, rgb: np.ndarray) -> Face:
        h, w = rgb.shape[:2]
        scale = min(1.0, self.cfg.detect_max_side / max(h, w))
        if min(h, w) * scale < MIN_DETECT_SIDE:
            raise Rejection(f"too small to search for a face: {w} x {h} px (short side {min(h, w) * scale:.0f} px as "
                            f"MTCNN sees it; it needs at least {MIN_DETECT_SIDE})")
        img = Image.fromarray(rgb)
        if scale < 1.0:
            img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        import torch

        try:
            with torch.no_grad():
                boxes, probs, points = self.mtcnn.detect(img, landmarks=True)
        except (ValueError, RuntimeError) as exc:  # MTCNN's own failures on odd shapes: this input only
            raise Rejection(f"MTCNN could not search this image ({type(exc).__name__}: {str(exc)[:160]})") from exc
        if boxes is None or len(boxes) == 0:
            raise Rejection("no face found by MTCNN")
        boxes = np.asarray(boxes, dtype=float) / scale
        probs = np.asarray(probs, dtype=float).reshape(-1)
        points = np.asarray(points, dtype=float).reshape(-1, 5, 2) / scale
        keep = probs >= self.cfg.min_confidence
        if not keep.any():
            raise Rejection(f"no face with confidence >= {self.cfg.min_confidence} (best {probs.max():.2f})")
        if keep.sum() > 1 and self.cfg.multiple_faces == "reject":
            raise Rejection(f"{int(keep.sum())} faces found; multiple_faces is 'reject'")
        idx = np.flatnonzero(keep)
        areas = (boxes[idx, 2] - boxes[idx, 0]) * (boxes[idx, 3] - boxes[idx, 1])
        best = int(idx[np.argmax(areas)])  # the most prominent face: the person being filmed
        return Face(tuple(boxes[best]), float(probs[best]), points[best])


def square_crop(rgb: np.ndarray, face: Face, margin: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """A square around the face box, padded white where it leaves the frame.

    Returns the crop, the landmarks and the face box in crop pixels."""
    x0, y0, x1, y1 = face.box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = max(1, int(round(side)))
    out = np.full((n, n, 3), 255, dtype=np.uint8)
    h, w = rgb.shape[:2]
    sx0, sy0 = max(0, left), max(0, top)
    sx1, sy1 = min(w, left + n), min(h, top + n)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = rgb[sy0:sy1, sx0:sx1]
    shift = np.array([left, top], dtype=float)
    box = (x0 - left, y0 - top, x1 - left, y1 - top)
    return out, face.landmarks - shift, box
