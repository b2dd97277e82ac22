"""A study's model as users take it away: found in a results store, or in a folder `painsearch export` wrote.

Either way it comes with the preprocessing its shards had (MTCNN settings, the multiple-face policy,
background removal, stored size), read from what the shards recorded, so new faces are prepared exactly
as the training faces were; nobody types those settings again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.config import DEFAULT_THRESHOLD, TARGET_RECALL
from pipelines.errors import PainsearchError, choices
from search.layout import BEST_DIR, CHOICE, DONE, VAL_PREDICTIONS, SearchKey

CARD = "model_card.json"
SAVED_MODEL = "model"


@dataclass
class ChosenModel:
    name: str  # what it is, in words
    train: dict[str, Any]  # the run's training settings (network, size, ...)
    preprocess: dict[str, Any]  # the shards' preprocessing settings
    source: dict[str, Any]  # where it came from: results store and search, or an exported folder
    # the pain probability at or above which a face is called pain: chosen on the search's validation split for a
    # target pain recall (`analysis.operating_point`), or as the exported card records it
    threshold: float = DEFAULT_THRESHOLD
    threshold_from: str = "the trained model's own decision"

    @property
    def size(self) -> int:
        return int(self.train["size"])

    def load(self):
        """The Keras model: it takes RGB faces in [0, 255] and returns class probabilities."""
        if "folder" in self.source:
            import tf_keras as keras

            from pipelines.bootstrap import tensorflow

            tensorflow()
            return keras.models.load_model(str(Path(self.source["folder"]) / SAVED_MODEL), compile=False)
        from pipelines.models.loader import load_from_store
        from pipelines.storage import open_store

        store = open_store(self.source["results"], self.source.get("endpoint"))
        key = SearchKey(**self.source["search"])
        return load_from_store(self.train, store, key.of(BEST_DIR, self.source["weights"]))


def shard_preprocess(shards: str, endpoint: str | None) -> dict[str, Any]:
    """The preprocessing settings the shards were made with (their manifest)."""
    from pipelines.shards.read import read_manifest
    from pipelines.storage import open_store

    return read_manifest(open_store(shards, endpoint))["preprocess"]


def from_results(uri: str, model: str, scenario: str, fold: int | None = None, endpoint: str | None = None,
                 target_recall: float = TARGET_RECALL) -> ChosenModel:
    """The model a search chose: the given fold's, or (by default) that of the fold whose search scored best on
    its validation split. The weights are those that scored its test split; the threshold is the one its validation
    split gives for `target_recall`."""
    from analysis.operating_point import search_threshold
    from pipelines.storage import open_store
    from search.layout import STUDY, read_parquet

    store = open_store(uri, endpoint)
    if not store.exists(STUDY):
        raise PainsearchError(f"{store.uri} holds no painsearch study ({STUDY} is missing); pass the --storage of a "
                              f"`painsearch search run`, or a folder `painsearch export` wrote.")
    study = json.loads(store.read_bytes(STUDY))
    cfg = study["config"]
    if model not in cfg["models"] or scenario not in cfg["scenarios"]:
        raise PainsearchError(f"The study at {store.uri} has no search of {model} under {scenario}; choose a network "
                              f"from {choices(cfg['models'])} and a scenario from {choices(cfg['scenarios'])}.")
    folds = range(cfg["folds"]) if fold is None else [fold]
    done = {}
    for k in folds:
        key = SearchKey(model, scenario, k)
        if store.exists(key.path, DONE):
            d = json.loads(store.read_bytes(key.path, DONE))
            if d["status"] == "ok":
                done[key] = d
    if not done:
        raise PainsearchError(f"No finished search of {model} under {scenario}"
                              + (f" fold {fold}" if fold is not None else "") + f" in {store.uri}; run or resume the "
                              f"study first (`painsearch search run ... --resume`).")
    minimise = cfg["search"]["metric"] == "val_loss"
    key = sorted(done, key=lambda k: (done[k]["best_score"] if minimise else -done[k]["best_score"], k.fold))[0]
    choice = json.loads(store.read_bytes(key.path, BEST_DIR, CHOICE))
    val = read_parquet(store.read_bytes(key.path, VAL_PREDICTIONS)) if store.exists(key.path, VAL_PREDICTIONS) else None
    threshold, threshold_from = search_threshold(val, target_recall, refit=choice["scored"] == "refit")
    return ChosenModel(
        name=f"{model}, {scenario}, fold {key.fold} (trial {choice['trial_id']}, {choice['scored'].replace('_', ' ')})",
        train=choice["train"], preprocess=shard_preprocess(cfg["shards"], cfg.get("s3_endpoint")),
        source={"results": store.uri, "endpoint": endpoint, "search": key.as_dict(), "weights": choice["scored_weights"],
                "choice": choice, "study": study, "target_recall": target_recall},
        threshold=threshold, threshold_from=threshold_from)


def from_folder(folder: str | Path) -> ChosenModel:
    """A model `painsearch export` wrote."""
    folder = Path(folder)
    if not (folder / CARD).is_file() or not (folder / SAVED_MODEL).is_dir():
        raise PainsearchError(f"{folder} is not a folder `painsearch export` wrote (it needs {CARD} and {SAVED_MODEL}/); "
                              f"export a model first, or pass a results store with --model and --scenario.")
    card = json.loads((folder / CARD).read_text())
    decision = card.get("decision_threshold") or {}  # a card from before thresholds were recorded has none
    return ChosenModel(name=card["name"], train=card["training"]["settings"], preprocess=card["preprocessing"],
                       source={"folder": str(folder)}, threshold=float(decision.get("value", DEFAULT_THRESHOLD)),
                       threshold_from=decision.get("from", "the trained model's own decision (the card names none)"))


def resolve(source: str, model: str | None, scenario: str | None, fold: int | None = None,
            endpoint: str | None = None, target_recall: float = TARGET_RECALL) -> ChosenModel:
    """A results store (with `model` and `scenario`) or an exported folder."""
    if Path(source).is_dir() and (Path(source) / CARD).is_file():
        return from_folder(source)
    if not model or not scenario:
        raise PainsearchError(f"{source} is a results store, so say which search's model to use: --model NAME "
                              f"--scenario SCENARIO (and --fold K, else the best fold by validation).")
    return from_results(source, model, scenario, fold, endpoint, target_recall)
