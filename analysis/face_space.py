"""The common face space LIME maps are averaged in: a template of MTCNN's five points, the warp that brings
a map there, the regions where pain shows, and how much of a map's mass falls in them.

Landmarks are stored in the stored image's pixels; a map is made at the network's input size, so the
landmarks are scaled by input / stored size before the warp (`scaled_landmarks`). The pain regions come
from the phantom's own ground truth (`_phantom_truth.csv`: the region boxes it drew for brows, eyes, nose
and the AU10 upper lip, with its landmarks) warped the same way; without it, the template's boxes stand in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

# where MTCNN's five points sit in a 112 x 112 aligned face (the common ArcFace template):
# left eye, right eye, nose tip, left and right mouth corners
TEMPLATE = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]])
CANON = 112
# where PSPI's action units act, in the template face: a stand-in where no ground truth is at hand
TEMPLATE_REGIONS = {
    "brows": (22, 30, 90, 46), "eyes": (22, 42, 90, 62),  # x0, y0, x1, y1
    "nose": (44, 60, 68, 80), "upper_lip": (36, 76, 76, 92),
}
# the phantom's regions that carry pain: AU4 (brows), AU6/7/43 (eyes), AU9 (nose), AU10 (upper lip)
PAIN_REGION_NAMES = ("brows", "eyes", "nose", "upper_lip")
# a canonical pixel belongs to a region when the region covers it in at least this share of the faces
REGION_QUORUM = 0.5


def scaled_landmarks(landmarks, stored_size: int, input_size: int) -> np.ndarray:
    """Stored landmarks (5 x 2, stored-image pixels) in the pixels of the image the network read."""
    return np.asarray(landmarks, float).reshape(5, 2) * (input_size / stored_size)


def _similarity(landmarks: np.ndarray, size: int):
    from skimage.transform import SimilarityTransform

    tform = SimilarityTransform.from_estimate(np.asarray(landmarks, float).reshape(5, 2), TEMPLATE * (size / CANON))
    return tform or None  # degenerate landmarks: no transform


def to_canonical(heat: np.ndarray, landmarks: np.ndarray, size: int = CANON) -> np.ndarray:
    """Warp a per-pixel map of a face (landmarks in the map's own pixels) into the canonical face; pixels the
    map does not reach are NaN. Degenerate landmarks give an all-NaN map, which averages leave out."""
    from skimage.transform import warp

    tform = _similarity(landmarks, size)
    if tform is None:
        return np.full((size, size), np.nan)
    return warp(heat, tform.inverse, output_shape=(size, size), order=1, cval=np.nan)


def template_regions(size: int = CANON) -> dict[str, np.ndarray]:
    out = {}
    k = size / CANON
    for name, (x0, y0, x1, y1) in TEMPLATE_REGIONS.items():
        mask = np.zeros((size, size), dtype=bool)
        mask[int(y0 * k):int(y1 * k), int(x0 * k):int(x1 * k)] = True
        out[name] = mask
    return out


def truth_regions(truth_csv: str | Path, size: int = CANON) -> dict[str, np.ndarray]:
    """The phantom's drawn regions in the canonical face: each face's region boxes warped with the similarity
    its landmarks give, and a pixel kept where at least `REGION_QUORUM` of the faces put the region."""
    from skimage.draw import polygon

    truth = pd.read_csv(truth_csv)
    counts: dict[str, np.ndarray] = {}
    faces = 0
    for geometry in truth["geometry"]:
        g = json.loads(geometry)
        tform = _similarity(np.asarray(g["landmarks"], float), size)
        if tform is None:
            continue
        faces += 1
        for name in PAIN_REGION_NAMES:
            if name not in g["regions"]:
                continue
            x0, y0, x1, y1 = g["regions"][name]
            corners = tform(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float))
            rr, cc = polygon(corners[:, 1], corners[:, 0], shape=(size, size))
            counts.setdefault(name, np.zeros((size, size)))[rr, cc] += 1
    return {name: c / max(faces, 1) >= REGION_QUORUM for name, c in counts.items()}


def face_oval(size: int = CANON) -> np.ndarray:
    """The template's face: an oval around its five points (what a registered map must cover)."""
    k = size / CANON
    yy, xx = np.mgrid[0:size, 0:size]
    return ((xx - 56 * k) / (40 * k)) ** 2 + ((yy - 64 * k) / (52 * k)) ** 2 <= 1


def pain_mask(regions: dict[str, np.ndarray]) -> np.ndarray:
    return np.any([regions[n] for n in PAIN_REGION_NAMES if n in regions], axis=0)


def mean_map(maps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean of the maps where any reaches, the pixels some map reaches): unstretched, so maps stay comparable."""
    stack = np.stack(maps)
    covered = np.isfinite(stack).any(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(covered, np.nanmean(np.where(covered, stack, 0.0), axis=0), 0.0)
    return mean, covered


def stretched(heat: np.ndarray) -> np.ndarray:
    """A map stretched to [0, 1] for drawing only (all-equal stays zero)."""
    lo, hi = float(heat.min()), float(heat.max())
    return (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)


def region_share(heat: np.ndarray, covered: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(share of the map's mass on the face that lies inside `mask`, the share chance gives: the mask's share of the
    face's covered pixels).

    Both over the face (the canonical oval) and covered pixels only, on the unstretched map: a pixel no map reaches
    says nothing either way, and the background is no place a pain expression could be, so a map spread evenly
    over the face, preferring no region, scores a ratio of exactly 1."""
    face = covered & face_oval(heat.shape[0])
    inside = mask & face
    total = float(heat[face].sum())
    share = float(heat[inside].sum() / total) if total > 0 else float("nan")
    return share, float(inside.sum() / max(int(face.sum()), 1))


def render(heat: np.ndarray, title: str, path) -> None:
    """The map (stretched for display) over an outline of the canonical face (no real face)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    s = heat.shape[0] / CANON
    fig, ax = plt.subplots(figsize=(2.6, 2.9))
    ax.imshow(stretched(heat), cmap="inferno", vmin=0, vmax=1, extent=(0, heat.shape[1], heat.shape[0], 0))
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
