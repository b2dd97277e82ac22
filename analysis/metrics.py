"""Test metrics per model x scenario: per fold, mean and spread, bootstrap intervals, paired comparisons.

The point estimates use pipelines.metrics (the same definitions training reports). Intervals are
percentile bootstraps over test images, resampling whole subjects (a subject's images are not
independent). Models are compared on the same test images with McNemar's exact test, and the
p-values are Holm-corrected for the number of comparisons within each scenario.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.metrics import classification_metrics

HEADLINE = ("accuracy", "precision_pain", "recall_pain", "f1_pain", "f1_macro", "roc_auc")


def _probs(df: pd.DataFrame) -> np.ndarray:
    cols = sorted(c for c in df.columns if c.startswith("prob_"))
    return df[cols].to_numpy(dtype=float)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney form, ties counted half); NaN with one class only."""
    y = np.asarray(y).astype(int)
    pos, neg = score[y == 1], score[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def metrics_of(df: pd.DataFrame) -> dict[str, float]:
    y = df["label"].to_numpy().astype(int)
    probs = _probs(df)
    out = classification_metrics(y, probs)
    out.pop("loss", None)
    out["roc_auc"] = roc_auc(y, probs[:, 1])
    pred = probs.argmax(axis=1)
    for t in (0, 1):
        for p in (0, 1):
            out[f"cm_{t}{p}"] = int(np.sum((y == t) & (pred == p)))  # true t, predicted p
    out["n"] = int(len(y))
    return out


def per_fold(preds: pd.DataFrame) -> pd.DataFrame:
    rows = [{"model": m, "scenario": s, "fold": f, **metrics_of(g)} for (m, s, f), g in preds.groupby(["model", "scenario", "fold"])]
    return pd.DataFrame(rows)


def bootstrap_ci(df: pd.DataFrame, names=HEADLINE, n_boot: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals, resampling subjects (with all their images) with replacement."""
    rng = np.random.default_rng(seed)
    groups = (df["dataset"].astype(str) + "/" + df["subject"].astype(str)).to_numpy()
    subjects, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(subjects))]
    y = df["label"].to_numpy().astype(int)
    probs = _probs(df)
    draws = {n: [] for n in names}
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(subjects), len(subjects))])
        m = classification_metrics(y[idx], probs[idx])
        m["roc_auc"] = roc_auc(y[idx], probs[idx, 1])
        for n in names:
            draws[n].append(m[n])
    return {n: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))) for n, v in draws.items()}


def chance_accuracy(labels: np.ndarray) -> float:
    """What always answering the commoner class scores: the accuracy a model must beat to have learned anything."""
    labels = np.asarray(labels).astype(int)
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else float("nan")


def summary(preds: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per model x scenario: mean and std over folds, pooled estimate and its bootstrap interval, and
    whether the interval of accuracy lies above chance (the commoner class's share of the test images)."""
    folds = per_fold(preds)
    rows = []
    for (m, s), g in preds.groupby(["model", "scenario"]):
        f = folds[(folds["model"] == m) & (folds["scenario"] == s)]
        pooled = metrics_of(g)
        ci = bootstrap_ci(g, n_boot=n_boot, seed=seed)
        row = {"model": m, "scenario": s, "folds": int(f["fold"].nunique()), "test_images": int(g["image_id"].nunique())}
        for n in HEADLINE:
            row[f"{n}_mean"] = float(f[n].mean())
            row[f"{n}_std"] = float(f[n].std(ddof=1)) if len(f) > 1 else 0.0
            row[n] = pooled[n]
            row[f"{n}_ci_low"], row[f"{n}_ci_high"] = ci[n]
        for c in ("no_pain", "pain"):
            row[f"precision_{c}"], row[f"recall_{c}"] = pooled[f"precision_{c}"], pooled[f"recall_{c}"]
        for k in ("cm_00", "cm_01", "cm_10", "cm_11"):
            row[k] = pooled[k]
        row["chance_accuracy"] = chance_accuracy(g["label"].to_numpy())
        row["above_chance"] = bool(row["accuracy_ci_low"] > row["chance_accuracy"])
        rows.append(row)
    return pd.DataFrame(rows)


def holm(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def mcnemar(preds: pd.DataFrame) -> pd.DataFrame:
    """Every pair of models per scenario, on the test images (and folds) both scored: exact McNemar, Holm-corrected."""
    rows = []
    for scenario, g in preds.groupby("scenario"):
        correct = g.assign(ok=(g["pred"] == g["label"])).pivot_table(index=["fold", "image_id"], columns="model", values="ok")
        pairs = list(combinations(sorted(correct.columns), 2))
        ps = []
        for a, b in pairs:
            both = correct[[a, b]].dropna().astype(bool)
            only_a = int((both[a] & ~both[b]).sum())
            only_b = int((~both[a] & both[b]).sum())
            p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
            ps.append(p)
            rows.append({"scenario": scenario, "model_a": a, "model_b": b, "n": int(len(both)),
                         "only_a_correct": only_a, "only_b_correct": only_b, "p": float(p)})
        if pairs:
            for row, adj in zip(rows[-len(pairs):], holm(np.array(ps))):
                row["p_holm"] = float(adj)
    return pd.DataFrame(rows, columns=["scenario", "model_a", "model_b", "n", "only_a_correct", "only_b_correct", "p", "p_holm"])
