"""Read a results store (laid out in `search.layout`) into pandas tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipelines.errors import PainsearchError
from pipelines.storage import Store, open_store
from search.layout import (BEST_DIR, CHOICE, DONE, PREDICTIONS, STUDY, TRIALS, VAL_PREDICTIONS, SearchKey, read_csv,
                           read_parquet, search_keys)


@dataclass
class Results:
    store: Store
    study: dict[str, Any]
    searches: pd.DataFrame  # one row per search of the study (done.json, or status "not run")
    predictions: pd.DataFrame  # every test prediction: model, scenario, fold, image_id, dataset, subject, label, prob_*, pred
    trials: pd.DataFrame  # every trial of every search, in the order Tune created them
    choices: dict[SearchKey, dict[str, Any]]  # best/trial.json of every finished search: what was chosen and scored
    # every validation prediction of the chosen weights, same columns (none for searches from before they were kept)
    validation: pd.DataFrame

    @property
    def config(self) -> dict[str, Any]:
        return self.study["config"]

    def keys(self) -> list[SearchKey]:
        c = self.config
        return search_keys(c["models"], c["scenarios"], c["folds"])


def load(uri: str, endpoint: str | None = None) -> Results:
    store = open_store(uri, endpoint)
    if not store.exists(STUDY):
        raise PainsearchError(
            f"{store.uri} holds no painsearch study ({STUDY} is missing); pass the --storage of a "
            f"`painsearch search run`."
        )
    study = json.loads(store.read_bytes(STUDY))
    cfg = study["config"]
    done, preds, val, trials, choices = [], [], [], [], {}
    for key in search_keys(cfg["models"], cfg["scenarios"], cfg["folds"]):
        where = key.as_dict()
        if not store.exists(key.path, DONE):
            done.append({**where, "status": "not run"})
            continue
        d = json.loads(store.read_bytes(key.path, DONE))
        d.pop("params", None)
        done.append(d)
        if store.exists(key.path, TRIALS):
            t = read_csv(store.read_bytes(key.path, TRIALS))
            t.insert(0, "order", range(len(t)))
            trials.append(t.assign(**where))
        if store.exists(key.path, PREDICTIONS):
            preds.append(read_parquet(store.read_bytes(key.path, PREDICTIONS)).assign(**where))
        if store.exists(key.path, VAL_PREDICTIONS):
            val.append(read_parquet(store.read_bytes(key.path, VAL_PREDICTIONS)).assign(**where))
        if store.exists(key.path, BEST_DIR, CHOICE):
            choices[key] = json.loads(store.read_bytes(key.path, BEST_DIR, CHOICE))
    if not preds:
        raise PainsearchError(f"The study at {store.uri} has no finished search with test predictions yet; "
                              f"run or resume it with `painsearch search run ... --resume`.")
    return Results(store=store, study=study, searches=pd.DataFrame(done), predictions=pd.concat(preds, ignore_index=True),
                   trials=pd.concat(trials, ignore_index=True) if trials else pd.DataFrame(), choices=choices,
                   validation=pd.concat(val, ignore_index=True) if val else pd.DataFrame())
