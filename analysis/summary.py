"""Test metrics per model x scenario: per fold (or repeat), mean and spread, the pooled estimate with its
bootstrap interval (subjects resampled), per-class precision and recall, and chance."""

from __future__ import annotations

import pandas as pd

from analysis.intervals import bootstrap_ci
from analysis.scores import chance_accuracy, metrics_of

HEADLINE = ("accuracy", "precision_pain", "recall_pain", "f1_pain", "f1_macro", "roc_auc")
PER_CLASS = tuple(f"{m}_{c}" for c in ("no_pain", "pain") for m in ("precision", "recall"))


def per_fold(preds: pd.DataFrame) -> pd.DataFrame:
    rows = [{"model": m, "scenario": s, "fold": f, **metrics_of(g)} for (m, s, f), g in preds.groupby(["model", "scenario", "fold"])]
    return pd.DataFrame(rows)


def summary(preds: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per model x scenario: mean and std over folds of the headline and per-class metrics, the pooled
    estimate over all test predictions with its bootstrap interval, and whether accuracy's interval lies above
    chance (the commoner class's share of the test images)."""
    folds = per_fold(preds)
    rows = []
    for (m, s), g in preds.groupby(["model", "scenario"]):
        f = folds[(folds["model"] == m) & (folds["scenario"] == s)]
        pooled = metrics_of(g)
        ci = bootstrap_ci(g, HEADLINE, n_boot=n_boot, seed=seed)
        row = {"model": m, "scenario": s, "folds": int(f["fold"].nunique()), "test_images": int(g["image_id"].nunique())}
        for n in (*HEADLINE, *PER_CLASS):
            row[f"{n}_mean"] = float(f[n].mean())
            row[f"{n}_std"] = float(f[n].std(ddof=1)) if len(f) > 1 else 0.0
            row[n] = pooled[n]
        for n in HEADLINE:
            row[f"{n}_ci_low"], row[f"{n}_ci_high"] = ci[n]
        for k in ("cm_00", "cm_01", "cm_10", "cm_11"):
            row[k] = pooled[k]
        row["chance_accuracy"] = chance_accuracy(g.drop_duplicates("image_id")["label"].to_numpy())
        row["above_chance"] = bool(row["accuracy_ci_low"] > row["chance_accuracy"])
        rows.append(row)
    return pd.DataFrame(rows)
