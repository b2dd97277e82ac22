"""LIME explanations of the best trials, brought into one face space and averaged: global heatmaps.

For the best fold of each (model, scenario), test images are picked by predicted class (as the
reference method does) and explained with `lime` on SLIC superpixels. Each explanation (superpixel
weights painted back onto the pixels) is warped to a canonical face with the similarity transform
that takes the image's five MTCNN landmarks onto the template's, then averaged per network, class
and dataset and stretched to [0, 1]. Explanations run as Ray tasks, one per (model, scenario), so a
cluster spreads the forward passes. No face is kept: only the warped maps leave the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# where MTCNN's five points sit in a 112 x 112 aligned face (the common ArcFace template):
# left eye, right eye, nose tip, left and right mouth corners
TEMPLATE = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]])
CANON = 112
# where the phantom (and the PSPI action units) put the pain signal, in the canonical face:
# brows and eyes (AU4, AU6, AU7, AU43), nose (AU9), upper lip (AU10)
PAIN_REGIONS = {
    "brows and eyes": (22, 30, 90, 62),  # x0, y0, x1, y1
    "nose": (44, 60, 68, 80),
    "upper lip": (38, 78, 74, 90),
}


@dataclass(frozen=True)
class LimeSettings:
    num_samples: int = 300
    images_per_class: int = 8
    hide_color: float | None = 0.0  # None: each superpixel's mean colour
    positive_only: bool = True
    n_segments: int = 40
    seed: int = 0


def region_mask(size: int = CANON) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    scale = size / CANON
    for x0, y0, x1, y1 in PAIN_REGIONS.values():
        mask[int(y0 * scale):int(y1 * scale), int(x0 * scale):int(x1 * scale)] = True
    return mask


def to_canonical(heat: np.ndarray, landmarks: np.ndarray, size: int = CANON) -> np.ndarray:
    """Warp a per-pixel map of a face crop into the canonical face (similarity transform on 5 points)."""
    from skimage.transform import SimilarityTransform, warp

    dst = TEMPLATE * (size / CANON)
    tform = SimilarityTransform.from_estimate(np.asarray(landmarks, float).reshape(5, 2), dst)
    if not tform:  # degenerate landmarks: no transform, the map is left out of the average
        return np.full((size, size), np.nan)
    return warp(heat, tform.inverse, output_shape=(size, size), order=1, cval=np.nan)


def explain_images(model_path: str, train: dict[str, Any], images: list[bytes], landmarks: list[list[float]],
                   labels: list[int], settings: LimeSettings) -> list[np.ndarray]:
    """LIME maps (positive weights of the explained class) in canonical face space, one per image."""
    from lime import lime_image
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    from pipelines.models import build
    from pipelines.train import decode_images

    size = int(train["size"])
    model = build(train["model"], n_classes=2, size=size, weights="none", preprocessing=train.get("preprocessing", "application"))
    model.load_weights(model_path)
    x = decode_images(images, size)

    def predict(batch: np.ndarray) -> np.ndarray:
        return model(batch.astype(np.float32), training=False).numpy()

    segment = SegmentationAlgorithm("slic", n_segments=settings.n_segments, compactness=10, sigma=1, start_label=0)
    explainer = lime_image.LimeImageExplainer(random_state=settings.seed)
    out = []
    for img, pts, label in zip(x, landmarks, labels):
        exp = explainer.explain_instance(img.astype(np.double), predict, labels=(label,), top_labels=None,
                                         hide_color=settings.hide_color, num_samples=settings.num_samples,
                                         batch_size=64, segmentation_fn=segment, random_seed=settings.seed)
        weights = dict(exp.local_exp[label])
        heat = np.vectorize(lambda s: weights.get(s, 0.0))(exp.segments).astype(float)
        if settings.positive_only:
            heat = np.clip(heat, 0, None)
        out.append(to_canonical(heat, np.asarray(pts, float)))
    return out


def average(maps: list[np.ndarray]) -> np.ndarray:
    """Mean map, stretched to [0, 1] (all-zero stays zero)."""
    stack = np.stack(maps)
    seen = np.isfinite(stack).any(axis=0)  # canonical pixels that no warped explanation reached stay 0
    m = np.where(seen, np.nanmean(np.where(seen, stack, 0.0), axis=0), 0.0)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def region_share(heat: np.ndarray) -> tuple[float, float]:
    """(share of the heatmap's mass inside the pain regions, share expected by chance = their area share)."""
    mask = region_mask(heat.shape[0])
    total = float(heat.sum())
    return (float(heat[mask].sum() / total) if total > 0 else float("nan"), float(mask.mean()))


def render(heat: np.ndarray, title: str, path) -> None:
    """The map over an outline of the canonical face (no real face)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    s = heat.shape[0] / CANON
    fig, ax = plt.subplots(figsize=(2.6, 2.9))
    ax.imshow(heat, cmap="inferno", vmin=0, vmax=1, extent=(0, heat.shape[1], heat.shape[0], 0))
    outline = dict(fill=False, color="white", lw=1.2, alpha=0.9)
    ax.add_patch(Ellipse((56 * s, 64 * s), 84 * s, 108 * s, **outline))
    for ex, ey in TEMPLATE[:2] * s:
        ax.add_patch(Ellipse((ex, ey), 18 * s, 8 * s, **outline))
        ax.plot([ex - 11 * s, ex + 11 * s], [ey - 11 * s, ey - 13 * s], color="white", lw=1.2, alpha=0.9)  # brows
    nx, ny = TEMPLATE[2] * s
    ax.plot([nx, nx - 5 * s, nx + 5 * s], [ny - 16 * s, ny, ny], color="white", lw=1.2, alpha=0.9)
    (mlx, mly), (mrx, mry) = TEMPLATE[3] * s, TEMPLATE[4] * s
    ax.plot([mlx, (mlx + mrx) / 2, mrx], [mly, mly + 3 * s, mry], color="white", lw=1.2, alpha=0.9)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
