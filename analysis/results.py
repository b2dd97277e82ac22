"""Read a results store (search/study.py documents its layout) into pandas tables."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipelines.errors import PainsearchError
from pipelines.storage import Store, open_store


@dataclass
class Results:
    store: Store
    study: dict[str, Any]
    searches: pd.DataFrame  # one row per finished search (done.json)
    predictions: pd.DataFrame  # every test prediction: model, scenario, fold, image_id, dataset, subject, label, prob_*, pred
    trials: pd.DataFrame  # every trial of every search, in the order Tune created them

    @property
    def config(self) -> dict[str, Any]:
        return self.study["config"]


def load(uri: str, endpoint: str | None = None) -> Results:
    store = open_store(uri, endpoint)
    if not store.exists("study.json"):
        raise PainsearchError(
            f"{store.uri} holds no painsearch study (study.json is missing); pass the --storage of a "
            f"`painsearch search run`."
        )
    study = json.loads(store.read_bytes("study.json"))
    cfg = study["config"]
    done, preds, trials = [], [], []
    for model in cfg["models"]:
        for scenario in cfg["scenarios"]:
            for fold in range(cfg["folds"]):
                path = f"searches/{model}/{scenario}/fold-{fold}"
                if not store.exists(path, "done.json"):
                    done.append({"model": model, "scenario": scenario, "fold": fold, "status": "not run"})
                    continue
                d = json.loads(store.read_bytes(path, "done.json"))
                d.pop("params", None)
                done.append(d)
                if store.exists(path, "trials.csv"):
                    t = pd.read_csv(io.BytesIO(store.read_bytes(path, "trials.csv")), dtype={"trial_id": str})
                    t.insert(0, "order", range(len(t)))
                    trials.append(t.assign(model=model, scenario=scenario, fold=fold))
                if store.exists(path, "predictions.parquet"):
                    p = pd.read_parquet(io.BytesIO(store.read_bytes(path, "predictions.parquet")))
                    preds.append(p.assign(model=model, scenario=scenario, fold=fold))
    if not preds:
        raise PainsearchError(f"The study at {store.uri} has no finished search with test predictions yet; "
                              f"run or resume it with `painsearch search run ... --resume`.")
    return Results(store=store, study=study, searches=pd.DataFrame(done), predictions=pd.concat(preds, ignore_index=True),
                   trials=pd.concat(trials, ignore_index=True) if trials else pd.DataFrame())
