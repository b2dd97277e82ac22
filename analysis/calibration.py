"""Whether a network's pain probability means what it says: Brier score, expected calibration error and the
reliability curve of its test predictions.

A user acts on a probability through a threshold, so a network whose 0.8 is right half of the time misleads
even at a good accuracy. Every test prediction counts (each repeat's model is a model of its own), binned by
its pain probability into `BINS` equal-width bins over [0, 1]; the expected calibration error is the
image-weighted mean gap between a bin's mean probability and its share of pain images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.scores import probs_of

BINS = 10  # equal-width bins of the pain probability over [0, 1], as the report states


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between the pain probability and the label (0 is perfect, 0.25 a coin at 0.5)."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """Per non-empty bin: its edges, the images in it, their mean pain probability and their share of pain."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    rows = [{"low": edges[b], "high": edges[b + 1], "images": int((which == b).sum()),
             "mean_probability": float(p[which == b].mean()), "pain_share": float(y[which == b].mean())}
            for b in range(bins) if (which == b).any()]
    return pd.DataFrame(rows, columns=["low", "high", "images", "mean_probability", "pain_share"])


def ece(y: np.ndarray, p: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the image-weighted mean |mean probability - pain share| over the bins."""
    r = reliability(y, p, bins)
    return float((r["images"] * (r["mean_probability"] - r["pain_share"]).abs()).sum() / max(r["images"].sum(), 1))


def calibration_table(preds: pd.DataFrame, bins: int = BINS) -> pd.DataFrame:
    """Per model and scenario: the test predictions' Brier score and expected calibration error."""
    rows = []
    for (model, scenario), df in preds.groupby(["model", "scenario"], sort=False):
        y, p = df["label"].to_numpy().astype(int), probs_of(df)[:, 1]
        rows.append({"model": model, "scenario": scenario, "predictions": len(df), "brier": brier(y, p),
                     f"ECE ({bins} equal bins)": ece(y, p, bins), "mean pain probability": float(p.mean()),
                     "pain share": float(y.mean())})
    return pd.DataFrame(rows)
