"""Background removal: U2-Net human segmentation through rembg (the paper's), OpenCV GrabCut, or none.

Background pixels become white, as in the paper. Missing U2-Net weights are a clear error before any
work, never a silent fallback.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.config import PreprocessConfig
from pipelines.errors import PainsearchError

U2NET_FILE = "u2net_human_seg.onnx"
U2NET_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net_human_seg.onnx"
U2NET_MD5 = "c09ddc2e0104f800e3e1bb4652583d1f"  # what rembg 2.0.86 checks its own download of the file against
# In a store, beside the weights: their sha256, written when they were fetched; every worker checks its copy by it
U2NET_HASH_FILE = U2NET_FILE + ".sha256"

# (image, face box) -> (the image with its background white, whether the background was removed)
BackgroundRemover = Callable[[np.ndarray, tuple[float, float, float, float]], tuple[np.ndarray, bool]]


def _no_background(img: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, bool]:
    return img, False


def _grabcut(img: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, bool]:
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
        return img, False  # nothing to separate (a flat image): the row records that its background stayed
    keep = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    out = img.copy()
    out[~keep] = 255
    return out, True


def u2net_weights(u2net_dir: str | None, endpoint: str | None = None) -> Path:
    """Where the U2-Net human-segmentation weights are, or the sentence that says how to get them. `u2net_dir` is a
    local folder, or a store (`s3://bucket/prefix`) that `painsearch models fetch-weights --u2net` filled: each
    node copies the file from there once, checked by its hash, into rembg's model folder (`endpoint`: the S3
    endpoint of the prepare config, else `AWS_ENDPOINT_URL`)."""
    from rembg.sessions.u2net_human_seg import U2netHumanSegSession

    if u2net_dir and "://" in u2net_dir:
        return _u2net_from_store(u2net_dir, Path(U2netHumanSegSession.model_dir()) / U2NET_FILE, endpoint)
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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stored_hash(store) -> str | None:
    """The sha256 recorded beside a store's U2-Net weights, or None when it holds no whole copy."""
    if not (store.exists(U2NET_FILE) and store.exists(U2NET_HASH_FILE)):
        return None
    words = store.read_bytes(U2NET_HASH_FILE).decode(errors="replace").split()
    return words[0] if words else None


def _u2net_from_store(uri: str, local: Path, endpoint: str | None = None) -> Path:
    """The store's U2-Net weights as a local file: the copy already on this node if its hash is the one recorded
    in the store, else a fresh copy, checked before it replaces anything."""
    from pipelines.storage import open_store

    store = open_store(uri, endpoint)
    expected = _stored_hash(store)
    if expected is None:
        raise PainsearchError(
            f"Background removal 'u2net_human_seg' needs {U2NET_FILE} and its hash {U2NET_HASH_FILE} in {uri}, which "
            f"are missing; fill it once with `painsearch models fetch-weights --to {uri} --u2net` where the internet "
            f"is reachable, or choose --background grabcut or none.")
    if local.is_file() and _sha256(local.read_bytes()) == expected:
        return local
    data = store.read_bytes(U2NET_FILE)
    got = _sha256(data)
    if got != expected:
        raise PainsearchError(
            f"{store.uri_of(U2NET_FILE)} has sha256 {got}, not the {expected} recorded beside it when it was fetched; "
            f"the store's copy is damaged or was replaced, and nothing was copied: fill it again with "
            f"`painsearch models fetch-weights --to {uri} --u2net`.")
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{U2NET_FILE}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(local)  # whole or not at all: workers of one node may copy at once
    return local


def publish_u2net(store, data: bytes) -> None:
    """Put U2-Net weights into a store with the hash every worker checks its copy against (the hash last: a store
    holding it holds the whole file)."""
    store.write_bytes(data, U2NET_FILE)
    store.write_bytes(f"{_sha256(data)}  {U2NET_FILE}\n".encode(), U2NET_HASH_FILE)


def fetch_u2net(to: str, url: str | None = None, md5: str = U2NET_MD5) -> bool:
    """Download the U2-Net weights once into a folder or store, checked against rembg's md5; False when a whole copy
    whose bytes match its recorded hash is there already (a damaged or partial one is fetched again)."""
    from pipelines.models.weights import download
    from pipelines.storage import open_store

    store = open_store(to)
    expected = _stored_hash(store)
    if expected is not None and _sha256(store.read_bytes(U2NET_FILE)) == expected:
        return False
    publish_u2net(store, download(url or U2NET_URL, md5, U2NET_FILE, to, "rembg checks its own download against"))
    return True


def _u2net(cfg: PreprocessConfig, threads: int, endpoint: str | None = None) -> BackgroundRemover:
    import onnxruntime as ort
    from rembg.sessions.u2net_human_seg import U2netHumanSegSession

    weights = u2net_weights(cfg.u2net_dir, endpoint)
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

    def remove(img: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, bool]:
        mask = np.asarray(session.predict(Image.fromarray(img))[0]) >= 128
        out = img.copy()
        out[~mask] = 255
        return out, True

    return remove


def background_remover(cfg: PreprocessConfig, threads: int = 1, endpoint: str | None = None) -> BackgroundRemover:
    if cfg.background == "u2net_human_seg":
        return _u2net(cfg, threads, endpoint)
    if cfg.background == "grabcut":
        return _grabcut
    return _no_background
