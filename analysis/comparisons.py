"""Paired comparisons of models on the same test images, counting each image once.

The external scenario scores the same CP-PAIN images once per repeat: an image's probabilities are averaged
over the repeats (and a k-fold image is scored once anyway) before anything is compared, so repeats never
count as more data. Two models are compared by a paired bootstrap over subjects of the difference in
accuracy and macro F1, with McNemar's exact test on the per-image votes beside it; p-values are
Holm-corrected within each scenario.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.intervals import paired_bootstrap
from analysis.scores import metrics_of

COLUMNS = ["scenario", "model_a", "model_b", "images", "subjects", "only_a_correct", "only_b_correct", "p_mcnemar",
           "p_mcnemar_holm", "accuracy_difference", "accuracy_difference_ci_low", "accuracy_difference_ci_high",
           "p_accuracy", "p_accuracy_holm", "f1_macro_difference", "f1_macro_difference_ci_low",
           "f1_macro_difference_ci_high", "p_f1_macro", "p_f1_macro_holm"]


def votes(preds: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, scenario, image): probabilities averaged over the folds or repeats that scored it."""
    probs = sorted(c for c in preds.columns if c.startswith("prob_"))
    out = preds.groupby(["model", "scenario", "image_id"], as_index=False).agg(
        {**{c: "mean" for c in probs}, "label": "first", "dataset": "first", "subject": "first"})
    out["pred"] = out[probs].to_numpy().argmax(axis=1)
    return out


def holm(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def mcnemar(a_ok: np.ndarray, b_ok: np.ndarray) -> tuple[int, int, float]:
    """(images only a got right, only b got right, exact two-sided McNemar p)."""
    only_a, only_b = int(np.sum(a_ok & ~b_ok)), int(np.sum(~a_ok & b_ok))
    p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return only_a, only_b, float(p)


def compare(preds: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every pair of models per scenario, on the images both scored, each image once."""
    v = votes(preds)
    rows = []
    for scenario, g in v.groupby("scenario"):
        by_model = {m: d.set_index("image_id") for m, d in g.groupby("model")}
        first = len(rows)
        for a, b in combinations(sorted(by_model), 2):
            common = by_model[a].index.intersection(by_model[b].index).sort_values()
            da, db = by_model[a].loc[common].reset_index(), by_model[b].loc[common].reset_index()
            only_a, only_b, p = mcnemar((da["pred"] == da["label"]).to_numpy(), (db["pred"] == db["label"]).to_numpy())
            row = {"scenario": scenario, "model_a": a, "model_b": b, "images": len(common),
                   "subjects": int((da["dataset"] + "/" + da["subject"]).nunique()),
                   "only_a_correct": only_a, "only_b_correct": only_b, "p_mcnemar": p}
            for name in ("accuracy", "f1_macro"):
                d = paired_bootstrap(da, db, lambda df, n=name: metrics_of(df)[n], n_boot=n_boot, seed=seed)
                row.update({f"{name}_difference": d["difference"], f"{name}_difference_ci_low": d["ci_low"],
                            f"{name}_difference_ci_high": d["ci_high"], f"p_{name}": d["p"]})
            rows.append(row)
        for col in ("p_mcnemar", "p_accuracy", "p_f1_macro"):
            for row, adj in zip(rows[first:], holm(np.array([r[col] for r in rows[first:]]))):
                row[f"{col}_holm"] = float(adj)
    return pd.DataFrame(rows, columns=COLUMNS)
