"""ImageNet weights for the pretrained networks: found locally, never fetched while building.

Cluster workers must not download the same files at once (or at all, offline), so `build` only reads
a weights directory the user names or Keras's own cache; `painsearch models fetch-weights` fills a
directory once, where the internet is reachable.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from pipelines.errors import PainsearchError, choices
from pipelines.models.specs import PRETRAINED, get_spec

KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _notop(name: str) -> tuple[str, str, str]:
    """(path below Keras's base URL, file name, md5) of a pretrained network's no-top weights."""
    spec = get_spec(name)
    if not spec.pretrained or spec.weights_file is None or spec.weights_md5 is None:
        raise PainsearchError(f"{name!r} has no ImageNet weights; choose among {choices(PRETRAINED)}.")
    return spec.weights_file, Path(spec.weights_file).name, spec.weights_md5


def keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def weights_file_name(name: str) -> str:
    """The file name under which Keras caches `name`'s no-top weights (what a weights folder must hold)."""
    return _notop(name)[1]


def weights_path(name: str, weights_dir: str | None = None) -> Path:
    """The no-top ImageNet weights of `name`, from `weights_dir` or Keras's cache, or a clear error."""
    _, file_name, _ = _notop(name)
    if weights_dir and "://" in weights_dir:
        return _from_store(name, file_name, weights_dir)
    places = ([Path(weights_dir).expanduser()] if weights_dir else []) + [keras_cache()]
    for place in places:
        if (place / file_name).is_file():
            return place / file_name
    where = " or ".join(str(p) for p in places)
    raise PainsearchError(
        f"The ImageNet weights of {name} ({file_name}) are not in {where}; run "
        f"`painsearch models fetch-weights --to DIR` where the internet is reachable and pass that folder as "
        f"the weights directory, or train from scratch with weights 'none'."
    )


def _from_store(name: str, file_name: str, uri: str) -> Path:
    """Weights kept in object storage: copied once into Keras's cache on this node."""
    from pipelines.storage import open_store

    local = keras_cache() / file_name
    if local.is_file():
        return local
    store = open_store(uri)
    if not store.exists(file_name):
        raise PainsearchError(
            f"The ImageNet weights of {name} ({file_name}) are not in {uri}; fill it with "
            f"`painsearch models fetch-weights --to {uri}` where the internet is reachable."
        )
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_bytes(store.read_bytes(file_name))
    tmp.replace(local)
    return local


def download(url: str, md5: str, file_name: str, to: str, publisher: str) -> bytes:
    """A weights file fetched from `url` and checked against the md5 its `publisher` gives, or the sentence why not."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise PainsearchError(
            f"Could not download {url} ({getattr(exc, 'reason', exc)}); run fetch-weights where the internet "
            f"is reachable, or copy {file_name} into {to} by hand."
        ) from exc
    got = hashlib.md5(data).hexdigest()
    if got != md5:
        raise PainsearchError(
            f"{url} sent {len(data)} bytes whose md5 is {got}, not the {md5} that {publisher} for {file_name}; "
            f"the download is corrupt or the mirror holds other weights, so nothing was written: fetch it again or "
            f"use another mirror."
        )
    return data


def fetch_weights(to: str, names: list[str] | None = None, base_url: str | None = None) -> list[str]:
    """Download the no-top weights once into a local folder or `s3://` prefix; returns what was written."""
    from pipelines.storage import open_store

    store = open_store(to)
    written = []
    for name in names or sorted(PRETRAINED):
        below, file_name, md5 = _notop(name)
        if store.exists(file_name):
            continue
        data = download((base_url or KERAS_BASE_URL).rstrip("/") + "/" + below, md5, file_name, to, "Keras publishes")
        store.write_bytes(data, file_name)
        written.append(file_name)
    return written


def write_standins(folder: str | Path, names: tuple[str, ...] = PRETRAINED, seed: int = 0) -> Path:
    """A weights folder laid out as `fetch_weights` fills it, holding Keras's own architectures with seeded random
    weights under the file names Keras publishes: what tests and benchmarks train on where ImageNet's files
    cannot be fetched. Network i of `names` draws with seed + its index in the registry, so a network's stand-in
    is the same whichever others are written beside it."""
    import tf_keras as keras

    from pipelines.models.build import resolve

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        spec = get_spec(name)
        keras.utils.set_random_seed(seed + PRETRAINED.index(name))
        backbone = resolve(spec.builder)(include_top=False, weights=None, input_shape=(spec.min_size, spec.min_size, 3))
        backbone.save_weights(str(folder / weights_file_name(name)))
        keras.backend.clear_session()
    return folder
