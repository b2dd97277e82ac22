"""The threshold a user acts on, chosen on validation images only, and post-hoc calibration fitted on them.

Missing pain is the costly error for people who cannot say that they hurt, so the operating point is the
highest pain threshold whose pain recall on the search's validation split reaches a target (`TARGET_RECALL` by
default). Each search's model gets its own threshold from its own validation images (`val_predictions.parquet`,
scored with the chosen weights); the test images choose nothing, they only show what the threshold gives:
sensitivity (pain recall) and specificity (no-pain recall), with intervals that resample people.

Calibration maps a model's pain probability through its logit: a temperature (`p' = sigmoid(logit(p) / T)`) or
Platt's slope and intercept (`p' = sigmoid(a logit(p) + b)`), fitted on the same validation images by maximum
likelihood. Both are increasing maps with a positive temperature or slope, so they move the probabilities, never
which images pass the threshold: the threshold is kept on the model's own probability, the one an exported
model returns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.calibration import BINS, brier, ece
from analysis.config import CALIBRATIONS, DEFAULT_THRESHOLD, TARGET_RECALL
from analysis.intervals import resamples, subject_members
from analysis.scores import probs_of
from pipelines.errors import PainsearchError

_EPS = 1e-6


def threshold_for_recall(y: np.ndarray, p: np.ndarray, target: float = TARGET_RECALL) -> float:
    """The highest threshold t for which `p >= t` finds at least `target` of the pain images (y == 1); 0.5 where
    there is no pain image to aim at."""
    check_target(target)
    pain = np.sort(np.asarray(p, float)[np.asarray(y) == 1])[::-1]
    if not len(pain):
        return DEFAULT_THRESHOLD
    return float(pain[max(math.ceil(target * len(pain) - 1e-9), 1) - 1])


def check_target(target: float) -> None:
    if not 0 < target <= 1:
        raise PainsearchError(f"The target pain recall must be a share above 0 and at most 1, not {target:g}; pass "
                              f"for example --target-recall 0.8 for 80 %.")


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _nll(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_calibration(method: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The fitted map's parameters (empty for `none`, or where the validation images hold one class only, which
    cannot tell a sharper map from a flatter one)."""
    from scipy.optimize import minimize, minimize_scalar

    if method not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {method!r}; choose one of {', '.join(CALIBRATIONS)}")
    y, z = np.asarray(y, float), logit(p)
    if method == "none" or len(np.unique(y)) < 2:
        return {}
    if method == "temperature":
        # over log T, so that the search is symmetric in sharpening and flattening
        r = minimize_scalar(lambda lt: _nll(y, _sigmoid(z / math.exp(lt))), bounds=(-4.0, 4.0), method="bounded")
        return {"temperature": float(math.exp(r.x))}
    r = minimize(lambda ab: _nll(y, _sigmoid(ab[0] * z + ab[1])), x0=np.array([1.0, 0.0]), method="L-BFGS-B",
                 bounds=[(1e-3, 100.0), (-50.0, 50.0)])  # a positive slope: the map keeps the images' order
    return {"slope": float(r.x[0]), "intercept": float(r.x[1])}


def calibrate(params: dict[str, float], p: np.ndarray) -> np.ndarray:
    """`p` through the fitted map (unchanged where nothing was fitted)."""
    if "temperature" in params:
        return _sigmoid(logit(p) / params["temperature"])
    if "slope" in params:
        return _sigmoid(params["slope"] * logit(p) + params["intercept"])
    return np.asarray(p, float)


def provenance(val: pd.DataFrame | None, target: float, refit: bool = False) -> str:
    """Where a search's threshold came from, in words."""
    if val is None or not len(val):
        return "no validation predictions (a study from before they were kept): the model's own 0.5"
    if not (val["label"] == 1).any():
        return "no pain image in the validation split: the model's own 0.5"
    where = f"the search's validation split, for a pain recall of {target:g}"
    # the refit trained on the validation images, so they are scored by the chosen trial's own model, whose
    # probabilities the refit's need not share
    return where + (" (scored by the chosen trial's model: the refit, which scores the test split, trained on "
                    "those images)" if refit else "")


def search_points(test: pd.DataFrame, val: pd.DataFrame, target: float, method: str,
                  refit: frozenset[tuple] = frozenset()) -> pd.DataFrame:
    """One row per search (model, scenario, fold) that has test predictions: its threshold and calibration, from
    its validation predictions alone, and the validation pain recall at that threshold. `refit` names the searches
    whose test split a refit scored."""
    rows = []
    keys = ["model", "scenario", "fold"]
    val_of = {k: g for k, g in val.groupby(keys, sort=False)} if len(val) else {}
    for key, _ in test.groupby(keys, sort=False):
        v = val_of.get(key)
        row: dict[str, Any] = dict(zip(keys, key))
        if v is None or not len(v):
            rows.append({**row, "threshold": DEFAULT_THRESHOLD, "from": provenance(None, target),
                         "validation_images": 0, "validation_recall": float("nan"), "calibration": {}})
            continue
        y, p = v["label"].to_numpy().astype(int), probs_of(v)[:, 1]
        t = threshold_for_recall(y, p, target)
        rows.append({**row, "threshold": t, "from": provenance(v, target, key in refit), "validation_images": len(v),
                     "validation_recall": float((p[y == 1] >= t).mean()) if (y == 1).any() else float("nan"),
                     "calibration": fit_calibration(method, y, p)})
    return pd.DataFrame(rows)


def _rates(y: np.ndarray, passed: np.ndarray) -> tuple[float, float]:
    pain, rest = y == 1, y == 0
    return (float(passed[pain].mean()) if pain.any() else float("nan"),
            float((~passed[rest]).mean()) if rest.any() else float("nan"))


def operating_points(test: pd.DataFrame, val: pd.DataFrame, target: float = TARGET_RECALL, method: str = "temperature",
                     n_boot: int = 1000, seed: int = 0, refit: frozenset[tuple] = frozenset()) -> dict[str, pd.DataFrame]:
    """`operating_point`: per model and scenario, the thresholds the searches chose on validation, and the test
    sensitivity and specificity they give (each test image judged by its own search's threshold), with 95 %
    intervals over people; `calibration_fitted`: the test split's Brier score and calibration error before and after
    the calibration fitted on each search's validation images; `search_thresholds`: one row per search."""
    check_target(target)
    points = search_points(test, val, target, method, refit)
    keys = ["model", "scenario", "fold"]
    df = test.merge(points[[*keys, "threshold"]], on=keys, how="left")
    params = {tuple(r[k] for k in keys): r["calibration"] for _, r in points.iterrows()}
    p = probs_of(df)[:, 1]
    df["p_calibrated"] = np.nan
    for k, g in df.groupby(keys, sort=False):
        df.loc[g.index, "p_calibrated"] = calibrate(params[k], probs_of(g)[:, 1])
    df["passed"] = p >= df["threshold"].to_numpy()
    rows, cal = [], []
    for (model, scenario), g in df.groupby(["model", "scenario"], sort=False):
        y, passed = g["label"].to_numpy().astype(int), g["passed"].to_numpy()
        sens, spec = _rates(y, passed)
        draws = np.array([_rates(y[i], passed[i]) for i in resamples(subject_members(g), n_boot, seed)]).reshape(-1, 2)
        pts = points[(points["model"] == model) & (points["scenario"] == scenario)]
        rows.append({"model": model, "scenario": scenario, "target pain recall": target,
                     "threshold (mean over searches)": float(pts["threshold"].mean()),
                     "threshold min": float(pts["threshold"].min()), "threshold max": float(pts["threshold"].max()),
                     "validation pain recall": float(pts["validation_recall"].mean()),
                     "test sensitivity": sens, "sensitivity_ci_low": float(np.nanpercentile(draws[:, 0], 2.5)),
                     "sensitivity_ci_high": float(np.nanpercentile(draws[:, 0], 97.5)),
                     "test specificity": spec, "specificity_ci_low": float(np.nanpercentile(draws[:, 1], 2.5)),
                     "specificity_ci_high": float(np.nanpercentile(draws[:, 1], 97.5)),
                     "test images": len(g),
                     "searches without validation predictions": int((pts["validation_images"] == 0).sum())})
        raw, fitted = probs_of(g)[:, 1], g["p_calibrated"].to_numpy(float)
        cal.append({"model": model, "scenario": scenario, "calibration": method,
                    "brier before": brier(y, raw), "brier after": brier(y, fitted),
                    f"ECE ({BINS} bins) before": ece(y, raw), f"ECE ({BINS} bins) after": ece(y, fitted)})
    searches = points.assign(calibration=[", ".join(f"{k} {v:.3g}" for k, v in c.items()) or "none"
                                          for c in points["calibration"]]) if len(points) else points
    return {"operating_point": pd.DataFrame(rows), "calibration_fitted": pd.DataFrame(cal), "search_thresholds": searches}


def search_threshold(val: pd.DataFrame | None, target: float = TARGET_RECALL, refit: bool = False) -> tuple[float, str]:
    """One search's threshold and where it came from, for `predict` and `export`."""
    check_target(target)
    if val is None or not len(val):
        return DEFAULT_THRESHOLD, provenance(None, target)
    y, p = val["label"].to_numpy().astype(int), probs_of(val)[:, 1]
    return threshold_for_recall(y, p, target), provenance(val, target, refit)
