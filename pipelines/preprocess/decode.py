"""Decode and validate one source file: bytes -> an upright HxWx3 uint8 RGB array, or a `Rejection`."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps

from pipelines.errors import Rejection

# The formats a face data set comes in (Pillow's names; a JPEG with extra pictures is MPO). Pillow knows
# dozens more, some of which hand the file to other programs (EPS to Ghostscript): those are refused
# from the header alone, before anything is decoded.
ACCEPTED = ("PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP")
# Pillow refuses anything above twice its own limit whatever the caller asks; a config cannot go beyond.
PILLOW_HARD_LIMIT = 2 * 89_478_485


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """Bytes -> HxWx3 uint8 RGB, upright, fully loaded. 16-bit data is scaled, never clipped.

    The pixel limit is this call's: the size in the header is checked before anything is decoded, and
    Pillow's process-wide limit is left as it is."""
    if not data:
        raise Rejection("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is the one that counts
            img = Image.open(io.BytesIO(data))
            if img.format not in ACCEPTED:
                raise Rejection(f"a {img.format} image, which no face data set uses; expected one of "
                                f"{', '.join(ACCEPTED)}")
            width, height = img.size
            if width * height > max_pixels:
                raise Rejection(f"refused as a decompression bomb: {width} x {height} px is more than {max_pixels} pixels")
            img.load()
    except Image.DecompressionBombError as exc:
        raise Rejection(f"refused as a decompression bomb: more than {max_pixels} pixels") from exc
    except Image.UnidentifiedImageError as exc:
        raise Rejection("not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, struct.error, MemoryError) as exc:
        raise Rejection(f"corrupt or truncated image ({str(exc)[:200]})") from exc
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
