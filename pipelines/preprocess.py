"""One source image -> the stored face: decode and validate, MTCNN crop, background removal, resize.

Every refusal is a `Rejected` reason that lands in `prepare_report.json`; nothing is silently cropped
to the full frame. The detector is heavy, so a `Preprocessor` is built once per worker and reused.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipelines.config import PREPROCESS_VERSION, PreprocessConfig
from pipelines.errors import PainsearchError

U2NET_FILE = "u2net_human_seg.onnx"
U2NET_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net_human_seg.onnx"


class Rejection(Exception):
    """An input that cannot become a training image; the message is the reason in the report."""


# ---------------------------------------------------------------- decode


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """Bytes -> HxWx3 uint8 RGB, upright, fully loaded. 16-bit data is scaled, never clipped."""
    if not data:
        raise Rejection("empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Rejection(f"refused as a decompression bomb: more than {max_pixels} pixels") from exc
    except Image.UnidentifiedImageError as exc:
        raise Rejection("not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise Rejection(f"corrupt or truncated image ({exc})") from exc
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not lose an otherwise good image
        pass
    return to_rgb(img)


def to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F":
            top = 1.0 if arr.max() <= 1.0 else max(arr.max(), 1.0)
        gray = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


# ---------------------------------------------------------------- detect


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
                "order crashes); import pipelines.models (or torchvision) before TensorFlow, or run prepare "
                "in its own process."
            )
        import torch
        from facenet_pytorch import MTCNN

        torch.set_num_threads(threads)
        self.cfg = cfg
        self.mtcnn = MTCNN(keep_all=True, device="cpu")

    def detect(self, rgb: np.ndarray) -> Face:
        h, w = rgb.shape[:2]
        scale = min(1.0, self.cfg.detect_max_side / max(h, w))
        img = Image.fromarray(rgb)
        if scale < 1.0:
            img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        import torch

        with torch.no_grad():
            boxes, probs, points = self.mtcnn.detect(img, landmarks=True)
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


# ---------------------------------------------------------------- background

BackgroundRemover = Callable[[np.ndarray, tuple[float, float, float, float]], np.ndarray]


def _no_background(img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    return img


def _grabcut(img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """OpenCV GrabCut seeded with the face box: no weights, so it works offline."""
    import cv2

    h, w = img.shape[:2]
    mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax, ay = (x1 - x0) / 2, (y1 - y0) / 2
    yy, xx = np.mgrid[0:h, 0:w]
    r_outer = ((xx - cx) / (ax * 1.15)) ** 2 + ((yy - cy - 0.1 * ay) / (ay * 1.35)) ** 2
    r_inner = ((xx - cx) / (ax * 0.6)) ** 2 + ((yy - cy) / (ay * 0.7)) ** 2
    mask[r_outer <= 1] = cv2.GC_PR_FGD
    mask[r_inner <= 1] = cv2.GC_FGD
    border = max(1, int(0.03 * min(h, w)))
    mask[:border, :] = cv2.GC_BGD
    mask[:, :border] = cv2.GC_BGD
    mask[:, -border:] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's RNG: the same input must give the same mask
    try:
        cv2.grabCut(img[..., ::-1].copy(), mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return img  # a flat image has nothing to separate
    keep = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    out = img.copy()
    out[~keep] = 255
    return out


def u2net_weights(u2net_dir: str | None) -> Path:
    """Where the U2-Net human-segmentation weights are, or the sentence that says how to get them."""
    from rembg.sessions.u2net_human_seg import U2netHumanSegSession

    if u2net_dir:
        path = Path(u2net_dir).expanduser() / U2NET_FILE
    else:
        found = U2netHumanSegSession.resolve_existing(U2NET_FILE)
        path = Path(found) if found else Path(U2netHumanSegSession.model_dir()) / U2NET_FILE
    if not path.is_file():
        raise PainsearchError(
            f"Background removal 'u2net_human_seg' needs the U2-Net weights file {path}, which is missing; "
            f"download {U2NET_URL} into {path.parent} (or set preprocess.u2net_dir to the folder that holds "
            f"{U2NET_FILE}), or choose --background grabcut or none."
        )
    return path


def _u2net(cfg: PreprocessConfig, threads: int) -> BackgroundRemover:
    import onnxruntime as ort
    from rembg.sessions.u2net_human_seg import U2netHumanSegSession

    weights = u2net_weights(cfg.u2net_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = U2netHumanSegSession.__new__(U2netHumanSegSession)
    session.model_name = "u2net_human_seg"
    try:
        session.inner_session = ort.InferenceSession(str(weights), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a bad file
        raise PainsearchError(
            f"The U2-Net weights file {weights} could not be loaded ({str(exc).splitlines()[0]}); "
            f"download it again from {U2NET_URL}."
        ) from exc

    def remove(img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        mask = np.asarray(session.predict(Image.fromarray(img))[0]) >= 128
        out = img.copy()
        out[~mask] = 255
        return out

    return remove


def background_remover(cfg: PreprocessConfig, threads: int = 1) -> BackgroundRemover:
    if cfg.background == "u2net_human_seg":
        return _u2net(cfg, threads)
    if cfg.background == "grabcut":
        return _grabcut
    return _no_background


# ---------------------------------------------------------------- the whole step


def settings(cfg: PreprocessConfig) -> str:
    """The stored `preprocess` column: what made the image, so shards can be told apart."""
    return json.dumps({"version": PREPROCESS_VERSION, **cfg.model_dump(exclude={"u2net_dir"})}, sort_keys=True)


@dataclass
class Processed:
    image: bytes  # PNG
    landmarks: list[float]  # 10 numbers: x, y of the 5 points in stored-image pixels
    confidence: float


class Preprocessor:
    """Built once per worker: the detector and the background model load here, not per image."""

    def __init__(self, cfg: PreprocessConfig, threads: int = 1) -> None:
        self.cfg = cfg
        self.detector = FaceDetector(cfg, threads)
        self.remove_background = background_remover(cfg, threads)

    def __call__(self, data: bytes) -> Processed:
        rgb = decode(data, self.cfg.max_image_pixels)
        if rgb.max() - rgb.min() < 8:
            raise Rejection("blank image (all pixels nearly the same colour)")
        face = self.detector.detect(rgb)
        crop, points, box = square_crop(rgb, face, self.cfg.margin)
        k = self.cfg.size / crop.shape[0]
        small = np.asarray(Image.fromarray(crop).resize((self.cfg.size, self.cfg.size), Image.LANCZOS))
        box_small = tuple(v * k for v in box)
        cleaned = self.remove_background(small, box_small)  # type: ignore[arg-type]
        buf = io.BytesIO()
        Image.fromarray(cleaned).save(buf, format="PNG", optimize=False, compress_level=6)
        return Processed(buf.getvalue(), [float(round(v, 2)) for v in (points * k).reshape(-1)], face.confidence)

