"""Test metrics of a set of predictions: the training loop's definitions (`pipelines.training.metrics`) plus
ROC AUC and the confusion matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.training.metrics import classification_metrics


def probs_of(df: pd.DataFrame) -> np.ndarray:
    return df[sorted(c for c in df.columns if c.startswith("prob_"))].to_numpy(dtype=float)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney form, ties counted half); NaN with one class only."""
    y = np.asarray(y).astype(int)
    pos, neg = score[y == 1], score[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def metrics_from(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, per-class and macro precision / recall / F1, and ROC AUC."""
    out = classification_metrics(y, probs)
    out.pop("loss", None)
    out["roc_auc"] = roc_auc(y, probs[:, 1])
    return out


def metrics_of(df: pd.DataFrame) -> dict[str, float]:
    """`metrics_from` of a predictions table, with the confusion matrix (`cm_<true><predicted>`) and its size."""
    y = df["label"].to_numpy().astype(int)
    probs = probs_of(df)
    out = metrics_from(y, probs)
    pred = probs.argmax(axis=1)
    for t in (0, 1):
        for p in (0, 1):
            out[f"cm_{t}{p}"] = int(np.sum((y == t) & (pred == p)))
    out["n"] = int(len(y))
    return out


def chance_accuracy(labels: np.ndarray) -> float:
    """What always answering the commoner class scores: the accuracy a model must beat to have learned anything."""
    labels = np.asarray(labels).astype(int)
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else float("nan")
