"""The operating point and post-hoc calibration (analysis/operating_point.py): the threshold comes from the
validation predictions alone, reaches its target recall there, and calibration fitted on validation moves
probabilities without moving decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.operating_point import (calibrate, fit_calibration, logit, operating_points, search_threshold,
                                      threshold_for_recall)


def scored(n: int, seed: int, temperature: float = 1.0, fold: int = 0, people: int = 40) -> pd.DataFrame:
    """`n` predictions of a model whose true pain probability is sigmoid(z) and which reports sigmoid(z * T): a
    model over-confident by the factor T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    p = 1 / (1 + np.exp(-z * temperature))
    return pd.DataFrame({"model": "m", "scenario": "s", "fold": fold, "dataset": "unbc",
                         "subject": [f"p{i % people}" for i in range(n)], "label": y, "prob_0": 1 - p, "prob_1": p})


def test_the_threshold_is_the_highest_that_reaches_the_target_recall():
    y = np.array([1, 1, 1, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.4, 0.2, 0.6, 0.1])
    assert threshold_for_recall(y, p, 0.8) == 0.4  # 4 of 5 pain images at or above it; 0.7 finds only 3
    assert threshold_for_recall(y, p, 1.0) == 0.2 and threshold_for_recall(y, p, 0.2) == 0.9
    assert threshold_for_recall(np.zeros(3), np.array([0.1, 0.2, 0.3]), 0.8) == 0.5  # no pain to aim at
    for seed in range(5):
        v = scored(200, seed)
        t = threshold_for_recall(v["label"].to_numpy(), v["prob_1"].to_numpy(), 0.8)
        pain = v.loc[v["label"] == 1, "prob_1"]
        assert (pain >= t).mean() >= 0.8 and (pain > t).mean() < 0.8  # any higher threshold misses the target


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_calibration_fitted_on_validation_undoes_an_over_confident_model(method):
    val, test = scored(4000, 0, temperature=3.0), scored(4000, 1, temperature=3.0)
    params = fit_calibration(method, val["label"].to_numpy(), val["prob_1"].to_numpy())
    if method == "temperature":
        assert params["temperature"] == pytest.approx(3.0, rel=0.15)
    else:
        assert params["slope"] == pytest.approx(1 / 3, rel=0.15) and abs(params["intercept"]) < 0.2
    p, fitted = test["prob_1"].to_numpy(), calibrate(params, test["prob_1"].to_numpy())
    y = test["label"].to_numpy()
    from analysis.calibration import brier, ece

    assert ece(y, fitted) < ece(y, p) / 2 and brier(y, fitted) < brier(y, p)
    assert (np.diff(fitted[np.argsort(p, kind="stable")]) >= 0).all()  # the images keep their order
    assert fit_calibration("none", y, p) == {} and fit_calibration(method, np.ones(10), np.full(10, 0.7)) == {}
    with pytest.raises(ValueError, match="temperature, platt"):
        fit_calibration("isotonic", y, p)


def test_the_test_split_chooses_nothing():
    """Each search's threshold and calibration come from its own validation predictions: relabelling the test
    images changes what the threshold gives, never the threshold."""
    test = pd.concat([scored(300, 1, 2.0, fold=0), scored(300, 2, 2.0, fold=1)], ignore_index=True)
    val = pd.concat([scored(300, 3, 2.0, fold=0), scored(300, 4, 2.0, fold=1)], ignore_index=True)
    a = operating_points(test, val, 0.8, "temperature", n_boot=100)
    flipped = test.assign(label=1 - test["label"])
    b = operating_points(flipped, val, 0.8, "temperature", n_boot=100)
    pd.testing.assert_frame_equal(a["search_thresholds"], b["search_thresholds"])
    for fold in (0, 1):
        v = val[val["fold"] == fold]
        row = a["search_thresholds"].set_index("fold").loc[fold]
        assert row["threshold"] == threshold_for_recall(v["label"].to_numpy(), v["prob_1"].to_numpy(), 0.8)
        assert row["validation_recall"] >= 0.8
    op = a["operating_point"].iloc[0]
    t = test.merge(a["search_thresholds"][["fold", "threshold"]], on="fold")
    pain = t["prob_1"] >= t["threshold"]
    assert op["test sensitivity"] == pytest.approx(pain[t["label"] == 1].mean())
    assert op["test specificity"] == pytest.approx((~pain[t["label"] == 0]).mean())
    assert op["sensitivity_ci_low"] <= op["test sensitivity"] <= op["sensitivity_ci_high"]
    cal = a["calibration_fitted"].iloc[0]
    assert cal["ECE (10 bins) after"] < cal["ECE (10 bins) before"]


def test_a_search_without_validation_predictions_keeps_its_models_own_decision():
    test = scored(100, 1)
    out = operating_points(test, pd.DataFrame(), n_boot=50)
    assert out["search_thresholds"]["threshold"].tolist() == [0.5]
    assert out["operating_point"]["searches without validation predictions"].tolist() == [1]
    assert search_threshold(None)[0] == 0.5 and "no validation predictions" in search_threshold(None)[1]


def test_logit_is_finite_at_the_ends():
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()


def test_a_target_recall_outside_0_to_1_is_one_sentence_and_provenance_says_where_a_threshold_came_from():
    from analysis.operating_point import search_points
    from pipelines.errors import PainsearchError

    v = scored(100, 1)
    for bad in (0.0, 80.0, -0.5):
        with pytest.raises(PainsearchError, match="at most 1") as err:
            search_threshold(v, bad)
        assert "\n" not in str(err.value)
    rest_only = v.assign(label=0)
    assert search_threshold(rest_only)[0] == 0.5 and "no pain image" in search_threshold(rest_only)[1]
    assert "chosen trial's model" in search_threshold(v, refit=True)[1]
    assert "chosen trial's model" not in search_threshold(v)[1]
    points = search_points(v, v, 0.8, "none", refit=frozenset({("m", "s", 0)}))
    assert "refit" in points["from"].iloc[0]
