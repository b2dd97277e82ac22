"""What a training run eats: shard rows decoded to float images, class weights, oversampling."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

# What a Ray Data task that decodes a block of PNGs asks for. Decoding small PNGs is light; at Ray Data's
# default of 1 CPU, the decode tasks of trials whose workers hold every CPU would wait while the cores idle.
DECODE_CPUS = 0.25


def stored_size(image: bytes) -> int:
    """The side of a stored face (its PNG's width): what its landmarks are measured in."""
    return Image.open(io.BytesIO(image)).size[0]


def decode_images(images: Any, size: int, dtype: type = np.float32) -> np.ndarray:
    """PNG bytes -> N x size x size x 3 in [0, 255]: float32, what every model's first layer expects, or uint8, a
    quarter of the memory and of the bytes sent to a GPU (the model casts its input on the device)."""
    out = np.empty((len(images), size, size, 3), dtype=dtype)
    for i, data in enumerate(images):
        img = Image.open(io.BytesIO(data)).convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(img)
    return out


def decode_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Ray Data map_batches step: shard rows -> `x` (images) and `y` (labels)."""
    return {"x": decode_images(batch["image"], size), "y": np.asarray(batch["label"], dtype=np.int64)}


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse class frequency, normalised so a balanced set gets weights of 1."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    counts[counts == 0] = 1.0
    return {c: float(len(labels) / (n_classes * counts[c])) for c in range(n_classes)}


def oversample(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices that repeat minority-class rows until every class is as frequent as the largest."""
    labels = np.asarray(labels, dtype=int)
    rng = np.random.default_rng(seed)
    top = np.bincount(labels).max()
    parts = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    idx = np.concatenate([np.concatenate([p, rng.choice(p, top - len(p), replace=True)]) for p in parts])
    return np.sort(idx)


def oversample_dataset(ds, labels: np.ndarray, n_classes: int):
    """A Ray Dataset whose class rows repeat a whole number of times, so classes come out about equally often."""
    from ray.data.expressions import col

    counts = np.bincount(labels, minlength=n_classes)
    parts = []
    for c in range(n_classes):
        if counts[c] == 0:
            continue
        part = ds.filter(expr=col("label") == c)
        parts.extend([part] * max(1, int(round(counts.max() / counts[c]))))
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
