"""The scenario gap: its intervals and paired CP-video analysis (analysis/scenario_gap.py), and the benchmark that
measures it on the phantom (benchmarks/scenario_gap.py), run at its smoke size."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.scenario_gap import gap, scenario_scores, video_pairs

ROOT = Path(__file__).resolve().parent.parent


def predictions(people: int, right: float, seed: int, dataset: str = "unbc") -> pd.DataFrame:
    """Two images a person (one of each class), each scored right with probability `right`."""
    rng = np.random.default_rng(seed)
    label = np.tile([1, 0], people)
    ok = rng.random(2 * people) < right
    p1 = np.where(ok == (label == 1), 0.8, 0.2) + rng.uniform(-0.1, 0.1, 2 * people)
    return pd.DataFrame({"dataset": dataset, "subject": np.repeat([f"s{i}" for i in range(people)], 2),
                         "sequence": np.repeat([f"v{i}" for i in range(people)], 2), "label": label,
                         "prob_0": 1 - p1, "prob_1": p1})


def test_a_gap_between_scenarios_has_an_interval_that_resamples_each_sides_people():
    good, poor = predictions(60, 0.9, 0), predictions(60, 0.55, 1, "cppain")
    g = gap(good, poor, "accuracy", n_boot=300)
    assert g["difference"] == pytest.approx(0.9 - 0.55, abs=0.08) and 0 < g["low"] < g["difference"] < g["high"]
    same = gap(good, predictions(60, 0.9, 2), "accuracy", n_boot=300)
    assert same["low"] < 0 < same["high"]
    s = scenario_scores(poor, n_boot=200)
    assert s["subjects"] == 60 and s["images"] == 120 and s["accuracy_low"] < s["accuracy"] < s["accuracy_high"]


def test_cp_videos_are_paired_only_when_one_frame_is_pain_and_one_is_not():
    df = predictions(10, 1.0, 0, "cppain")
    both_pain = df.index[(df["subject"] == "s0")]
    df.loc[both_pain, "label"] = 1  # a rest frame the raters called pain: no pair
    v = video_pairs(df, n_boot=100)
    assert v["videos"] == 9 and v["pain_higher"] == 1.0 and v["difference"] > 0.3
    df["prob_1"], df["prob_0"] = 0.7, 0.3  # a shift common to both frames of every video: no evidence either way
    v = video_pairs(df, n_boot=100)
    assert v["pain_higher"] == 0.5 and v["difference"] == 0.0


@pytest.mark.slow
def test_the_scenario_gap_benchmark_at_its_smoke_size(tmp_path, monkeypatch):
    """Both kinds of network (from scratch; pretrained on stand-in weights: vgg16, which costs a fifth of the
    benchmark's resnet50 here and runs the same pretrained path) in the three scenarios and the ablation: every pool image is tested once per k-fold scenario, the CP set in every CP variant, and the
    benchmark's working folder is gone afterwards."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    sys.path.insert(0, str(ROOT))
    from benchmarks.scenario_gap import SIZES, run
    from pipelines.phantom.cp_shift import FACTORS

    preds, summary = run(1, ["weinet", "vgg16"], SIZES["smoke"], n_boot=50, log=lambda m: None)
    assert not list(tmp_path.glob("painsearch-gap-*"))  # the benchmark's folder is gone (TensorFlow's autograph
    # files stay beside it)
    for network in ("weinet", "vgg16"):
        p = preds[preds["network"] == network]
        for scenario in ("image_kfold", "subject_kfold"):
            tested = p.loc[p["scenario"] == scenario, "image_id"]
            assert tested.is_unique and set(p.loc[p["scenario"] == scenario, "dataset"]) == {"unbc", "mintpain", "delaware"}
        cp = set(p.loc[p["scenario"] == "external", "image_id"])
        assert set(p.loc[p["scenario"] == "external", "dataset"]) == {"cppain"}
        ablation = p[p["scenario"] == "ablation"]
        assert set(ablation["cp_factors"]) == {"none", *FACTORS}
        for name, rows in ablation.groupby(["cp_factors", "sources"]):
            assert len(rows) == len(cp), name  # the same CP people and frames in every variant
        s = summary[network]
        assert set(s["scores"]) == {"image_kfold", "subject_kfold", "external"} and set(s["ablation"]) == set(FACTORS)
        assert s["passes"] == all(s["checks"].values()) and len(s["checks"]) == 3


def test_the_reports_central_result_counts_an_image_once_and_shows_the_papers_figures_on_its_data():
    from analysis.scenario_gap import central_result

    image = predictions(40, 0.9, 0).assign(scenario="image_kfold")
    subject = predictions(40, 0.8, 1).assign(scenario="subject_kfold")
    repeats = [predictions(30, 0.6, 2 + r, "cppain").assign(scenario="external", fold=r) for r in range(3)]
    preds = pd.concat([image, subject, *repeats], ignore_index=True).assign(model="inceptionv3")
    preds["image_id"] = preds["dataset"] + "/" + preds["subject"] + "/" + preds.groupby(
        ["scenario", "fold", "subject"], dropna=False).cumcount().astype(str)
    sequences = dict(zip(preds["image_id"], preds["sequence"]))
    t = central_result(preds, sequences, paper=True, n_boot=100)
    rows = t["scenario_gap"].set_index("scenario")
    assert rows.loc["external", "images"] == 60  # three repeats of 60 images: each image once
    assert rows.loc["external", "paper accuracy"] == 0.6267 and np.isnan(rows.loc["image_kfold", "paper accuracy"])
    assert list(t["scenario_gaps"]["gap"]) == ["image_kfold - subject_kfold", "subject_kfold - external"]
    assert t["cp_videos"]["videos"].tolist() == [30]
    assert "paper accuracy" not in central_result(preds, None, paper=False, n_boot=50)["scenario_gap"]


def test_the_frames_a_network_finds_least_likely_are_flagged_per_dataset():
    """Out-of-fold probabilities that contradict a known tenth of the labels: cleanlab flags those frames first,
    ranked within each dataset, and the subject folds are the ones read."""
    from analysis.label_issues import label_issues

    rng = np.random.default_rng(0)
    n = 400
    label = rng.integers(0, 2, n)
    p1 = np.clip(np.where(label == 1, 0.85, 0.15) + rng.normal(0, 0.08, n), 0.01, 0.99)
    flipped = rng.choice(n, 40, replace=False)
    given = label.copy()
    given[flipped] = 1 - given[flipped]
    preds = pd.DataFrame({"image_id": [f"i{i:03d}" for i in range(n)], "dataset": np.where(np.arange(n) < 200, "unbc", "mintpain"),
                          "subject": [f"s{i // 4}" for i in range(n)], "label": given, "prob_0": 1 - p1, "prob_1": p1,
                          "model": "weinet", "scenario": "subject_kfold"})
    other = preds.assign(scenario="image_kfold", prob_0=0.5, prob_1=0.5)  # ignored: subject folds come first
    t = label_issues(pd.concat([preds, other]))
    found = set(t["label_issues"]["image_id"])
    truth = {f"i{i:03d}" for i in flipped}
    assert len(found & truth) / len(truth) > 0.9 and len(found & truth) / len(found) > 0.8
    counts = t["label_issue_counts"].set_index("dataset")
    assert counts["images"].sum() == n and counts.loc["unbc", "flagged"] == (t["label_issues"]["dataset"] == "unbc").sum()
    first = t["label_issues"].groupby("dataset").head(1)
    assert (first["rank"] == 1).all() and (first["p_given_label"] < 0.3).all()
