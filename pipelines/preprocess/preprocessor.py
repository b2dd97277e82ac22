"""One source image -> the stored face: decode and validate, MTCNN crop, background removal, resize.

Every refusal is a `Rejection` whose reason lands in `prepare_report.json`; nothing is silently cropped
to the full frame. The detector is heavy, so a `Preprocessor` is built once per worker and reused.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipelines.config import PREPROCESS_VERSION, PreprocessConfig
from pipelines.errors import Rejection
from pipelines.preprocess.background import background_remover
from pipelines.preprocess.decode import decode
from pipelines.preprocess.faces import FaceDetector, square_crop


def settings(cfg: PreprocessConfig) -> str:
    """The stored `preprocess` column: what made the image, so shards can be told apart."""
    return json.dumps({"version": PREPROCESS_VERSION, **cfg.model_dump(exclude={"u2net_dir"})}, sort_keys=True)


@dataclass
class Processed:
    image: bytes  # PNG
    landmarks: list[float]  # 10 numbers: x, y of the 5 points in stored-image pixels
    confidence: float
    background_removed: bool  # False with `background: none`, or when the remover found nothing to separate
    box: tuple[float, float, float, float]  # the face MTCNN found: x0, y0, x1, y1 in source pixels
    face: np.ndarray  # the stored face itself (size x size x 3 uint8): what `image` holds, decoded


class Preprocessor:
    """Built once per worker: the detector and the background model load here, not per image."""

    def __init__(self, cfg: PreprocessConfig, threads: int = 1, endpoint: str | None = None) -> None:
        self.cfg = cfg
        self.detector = FaceDetector(cfg, threads)
        self.remove_background = background_remover(cfg, threads, endpoint)

    def __call__(self, data: bytes) -> Processed:
        """One source file (its bytes)."""
        return self.process(decode(data, self.cfg.max_image_pixels))

    def process(self, rgb: np.ndarray) -> Processed:
        """One decoded HxWx3 uint8 RGB image (a video's frame, for instance)."""
        if rgb.max() - rgb.min() < 8:
            raise Rejection("blank image (all pixels nearly the same colour)")
        face = self.detector.detect(rgb)
        crop, points, box = square_crop(rgb, face, self.cfg.margin)
        k = self.cfg.size / crop.shape[0]
        small = np.asarray(Image.fromarray(crop).resize((self.cfg.size, self.cfg.size), Image.LANCZOS))
        box_small = tuple(v * k for v in box)
        cleaned, removed = self.remove_background(small, box_small)  # type: ignore[arg-type]
        buf = io.BytesIO()
        Image.fromarray(cleaned).save(buf, format="PNG", optimize=False, compress_level=6)
        return Processed(buf.getvalue(), [float(round(v, 2)) for v in (points * k).reshape(-1)], face.confidence, removed,
                         tuple(float(v) for v in face.box), cleaned)
