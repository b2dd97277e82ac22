"""Broken and odd inputs for `prepare`, seeded: what a data set found in the wild may hold.

`fuzz_manifest(root, seed, n)` writes a manifest data set whose rows point at images of every size from
1 px to a header that claims billions of pixels, thin strips, every Pillow mode and bit depth, files cut
at every kind of offset, wrong extensions, formats a face data set never uses, symlinks inside and out
of the folder, things that cannot be read even by root (a dangling link, a FIFO, a folder named like an
image), paths that leave the folder, and a few real phantom faces, plus odd CSV rows. The fuzz test and
benchmark run `prepare` over it and check that every input ends as a row or a listed rejection.
"""

from __future__ import annotations

import csv
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr", "LAB")  # every mode a file holds


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims a huge image and holds almost no data: what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _image(rng: np.random.Generator, width: int, height: int, mode: str = "RGB") -> Image.Image:
    base = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    if mode in ("I;16", "I", "F"):
        return base.convert("L").convert(mode)
    return base.convert(mode)


def _case(rng: np.random.Generator, i: int, faces: list[bytes]) -> tuple[str, bytes | str | None]:
    """(file name, content) of the i-th input: bytes to write, "fifo", "dir", "dangling", "link-in",
    "link-out", "outside", "absolute", or None for a row whose file does not exist."""
    kind = i % 16
    if kind == 0 and faces:
        return f"face{i}.png", faces[i % len(faces)]
    if kind == 1:  # sizes from 1 px up, squares and thin strips
        w, h = [(1, 1), (2, 3), (12, 12), (19, 300), (4000, 70), (70, 4000), (1, 2000), (64, 64)][int(rng.integers(8))]
        return f"size{i}.png", _encode(_image(rng, w, h), "PNG")
    if kind == 2:  # every mode and bit depth Pillow writes
        mode = MODES[int(rng.integers(len(MODES)))]
        fmt = "TIFF" if mode in ("CMYK", "I;16", "I", "F", "LAB", "YCbCr") else "PNG"
        return f"mode{i}.{'tif' if fmt == 'TIFF' else 'png'}", _encode(_image(rng, 48, 40, mode), fmt)
    if kind == 3:  # cut at every kind of offset: the header, inside the data, the last byte
        data = _encode(_image(rng, 80, 60), "PNG" if rng.random() < 0.5 else "JPEG")
        cut = [0, 8, 20, len(data) // 2, len(data) - 1][int(rng.integers(5))]
        return f"cut{i}.png", data[:cut]
    if kind == 4:  # the wrong extension, both ways
        return (f"wrong{i}.jpg", _encode(_image(rng, 50, 50), "PNG")) if rng.random() < 0.5 else (f"text{i}.png", b"not an image\n")
    if kind == 5:  # formats a face data set never uses
        fmt = ["GIF", "ICO", "PPM", "TGA", "PCX"][int(rng.integers(5))]
        return f"other{i}.png", _encode(_image(rng, 40, 40, "RGB" if fmt != "GIF" else "P"), fmt)
    if kind == 6:
        return f"bomb{i}.png", _png_claiming(60000, 60000)
    if kind == 7:
        return f"fifo{i}.png", "fifo"
    if kind == 8:
        return f"folder{i}.png", "dir"
    if kind == 9:
        return f"dangling{i}.png", "dangling"
    if kind == 10:
        return f"link{i}.png", "link-in"
    if kind == 11:
        return f"escape{i}.png", "link-out"
    if kind == 12:
        return f"../outside{i}.png", "outside"
    if kind == 13:
        return f"absolute{i}.png", "absolute"
    if kind == 14:
        return f"missing{i}.png", None
    return f"blank{i}.png", _encode(Image.new("RGB", (90, 90), (200, 200, 200)), "PNG")


def fuzz_manifest(root: str | Path, seed: int, n: int, faces: list[bytes] | None = None) -> Path:
    """Write `n` odd inputs and their manifest under `root/fuzz`; returns the manifest's path."""
    root = Path(root)
    folder = root / "fuzz"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    outside = root / "outside"
    outside.mkdir(exist_ok=True)
    good = _encode(_image(np.random.default_rng(seed), 64, 64), "PNG")
    (outside / "elsewhere.png").write_bytes(good)
    (folder / "images" / "inside.png").write_bytes(good)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        name, content = _case(rng, i, faces or [])
        rel = f"images/{name}"
        path = folder / rel
        if content == "outside":
            (outside / Path(name).name).write_bytes(good)
        elif content == "absolute":
            rel = str(outside / f"absolute{i}.png")
            (outside / f"absolute{i}.png").write_bytes(good)
        elif content == "fifo":
            os.mkfifo(path)
        elif content == "dir":
            path.mkdir()
        elif content == "dangling":
            path.symlink_to(folder / "images" / f"gone{i}.png")
        elif content == "link-in":
            path.symlink_to(folder / "images" / "inside.png")
        elif content == "link-out":
            path.symlink_to(outside / "elsewhere.png")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        label = ["pain", "no pain", "1", "0", "Neutral ", "maybe"][int(rng.integers(6))]
        level = ["", "", "2", "-1", "nan", "0"][int(rng.integers(6))]
        rows.append({"path": rel, "subject": f"f{int(rng.integers(6))}" if rng.random() > 0.03 else "",
                     "label": label, "level": level if label not in ("0", "no pain", "Neutral ") or level in ("", "0") else ""})
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "subject", "label", "level"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
