"""The paper's central result: how much worse a network does on people it has not seen, and on CP faces.

Every function takes predictions tables (`label`, `prob_*`, `dataset`, `subject`; `sequence` for the paired
analysis) and resamples subjects, never images, for its intervals.

- `scenario_scores`: accuracy and ROC AUC of one scenario's test predictions, with intervals, and the
  recall of each class;
- `gap`: the difference of a metric between two scenarios (different people on each side, so each side's
  subjects are resampled on their own), with its interval;
- `video_pairs`: CP videos give a pain and a rest frame of the same person in the same recording; how often the
  network scores the pain frame above the rest frame, and by how much, which no shift common to a person's
  frames can explain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.intervals import bootstrap_ci, resamples, subject_members
from analysis.scores import metrics_of, probs_of, roc_auc

N_BOOT = 1000


def accuracy(df: pd.DataFrame) -> float:
    return float(np.mean(probs_of(df).argmax(axis=1) == df["label"].to_numpy().astype(int)))


def auc(df: pd.DataFrame) -> float:
    return roc_auc(df["label"].to_numpy().astype(int), probs_of(df)[:, 1])


METRICS: dict[str, Callable[[pd.DataFrame], float]] = {"accuracy": accuracy, "roc_auc": auc}


def scenario_scores(df: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float]:
    """Accuracy and ROC AUC with 95 % subject-bootstrap intervals, each class's recall, and the counts."""
    m = metrics_of(df)
    ci = bootstrap_ci(df, ("accuracy", "roc_auc"), n_boot=n_boot, seed=seed)
    return {"accuracy": m["accuracy"], "accuracy_low": ci["accuracy"][0], "accuracy_high": ci["accuracy"][1],
            "roc_auc": m["roc_auc"], "roc_auc_low": ci["roc_auc"][0], "roc_auc_high": ci["roc_auc"][1],
            "recall_pain": m["recall_pain"], "recall_no_pain": m["recall_no_pain"], "images": m["n"],
            "subjects": len(subject_members(df))}


def gap(a: pd.DataFrame, b: pd.DataFrame, metric: str, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float]:
    """metric(a) - metric(b) for two scenarios' predictions, and its 95 % interval: each draw resamples a's
    subjects and b's subjects, each side on its own (they are different people)."""
    fn = METRICS[metric]
    draws = np.array([fn(a.iloc[i]) - fn(b.iloc[j]) for i, j in zip(resamples(subject_members(a), n_boot, seed),
                                                                      resamples(subject_members(b), n_boot, seed + 1))])
    draws = draws[np.isfinite(draws)]
    low, high = (np.percentile(draws, [2.5, 97.5]) if len(draws) else (np.nan, np.nan))
    return {"difference": fn(a) - fn(b), "low": float(low), "high": float(high)}


def video_pairs(df: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float]:
    """The videos with one frame labelled pain and one labelled no pain: the share whose pain frame scores higher
    (ties count half), the mean difference of the pain probability, with 95 % intervals resampling people, and
    the number of videos."""
    p = probs_of(df)[:, 1]
    frames = df.assign(p=p).groupby(["dataset", "subject", "sequence"])
    rows = []
    for (dataset, subject, _), g in frames:
        labels = g["label"].to_numpy().astype(int)
        if len(g) == 2 and sorted(labels) == [0, 1]:
            pain, rest = g["p"].to_numpy()[labels == 1][0], g["p"].to_numpy()[labels == 0][0]
            rows.append({"dataset": dataset, "subject": subject, "higher": float(pain > rest) + 0.5 * float(pain == rest),
                         "difference": float(pain - rest)})
    pairs = pd.DataFrame(rows, columns=["dataset", "subject", "higher", "difference"])
    if pairs.empty:
        return {"videos": 0, "pain_higher": np.nan, "pain_higher_low": np.nan, "pain_higher_high": np.nan,
                "difference": np.nan, "difference_low": np.nan, "difference_high": np.nan}
    draws = np.array([(pairs["higher"].iloc[i].mean(), pairs["difference"].iloc[i].mean())
                      for i in resamples(subject_members(pairs), n_boot, seed)])
    low, high = np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)
    return {"videos": len(pairs), "pain_higher": float(pairs["higher"].mean()), "pain_higher_low": float(low[0]),
            "pain_higher_high": float(high[0]), "difference": float(pairs["difference"].mean()),
            "difference_low": float(low[1]), "difference_high": float(high[1])}


SCENARIOS = ("image_kfold", "subject_kfold", "external")
GAPS = (("image_kfold", "subject_kfold"), ("subject_kfold", "external"))
# The paper's own figures where its text gives them (Abstract and Results): InceptionV3 on CP-PAIN. Its
# Figure 4 and 5 hold the rest as bars, not numbers.
PAPER = {("inceptionv3", "external"): {"accuracy": 0.6267, "f1_macro": 0.6112}}


def _ci(v: float, low: float, high: float) -> str:
    return "" if v != v else f"{v:.3f} [{low:.3f}, {high:.3f}]"


def central_result(preds: pd.DataFrame, sequences: dict[str, str] | None = None, paper: bool = False,
                   n_boot: int = N_BOOT, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The report's first tables, from a study's test predictions (`model`, `scenario`, `image_id`, ...): each
    network's accuracy and ROC AUC by scenario with intervals and each class's recall (`scenario_gap`); the gaps
    image - subject and subject - external (`scenario_gaps`); and, given each image's video (`sequences`:
    image_id -> sequence), the paired CP-video analysis (`cp_videos`). An image scored by several repeats counts
    once, with its probabilities averaged. `paper`: the run used the paper's data, so its figures stand beside."""
    from analysis.comparisons import votes

    one = votes(preds)
    rows, gap_rows, video_rows = [], [], []
    for model in dict.fromkeys(preds["model"]):
        p = one[one["model"] == model]
        by = {s: p[p["scenario"] == s] for s in SCENARIOS if (p["scenario"] == s).any()}
        for scenario, df in by.items():
            s = scenario_scores(df, n_boot, seed)
            row = {"model": model, "scenario": scenario, "accuracy [95% CI]": _ci(s["accuracy"], s["accuracy_low"],
                                                                                    s["accuracy_high"]),
                   "ROC AUC [95% CI]": _ci(s["roc_auc"], s["roc_auc_low"], s["roc_auc_high"]),
                   "pain recall": s["recall_pain"], "no-pain recall": s["recall_no_pain"], "images": s["images"],
                   "people": s["subjects"]}
            if paper:
                row["paper accuracy"] = PAPER.get((model, scenario), {}).get("accuracy", float("nan"))
            rows.append(row)
        for a, b in GAPS:
            if a in by and b in by:
                g = {m: gap(by[a], by[b], m, n_boot, seed) for m in METRICS}
                gap_rows.append({"model": model, "gap": f"{a} - {b}",
                                 **{f"{label} [95% CI]": _ci(g[m]["difference"], g[m]["low"], g[m]["high"])
                                    for m, label in (("accuracy", "accuracy"), ("roc_auc", "ROC AUC"))}})
        if "external" in by and sequences is not None:
            ext = by["external"].assign(sequence=by["external"]["image_id"].map(sequences))
            v = video_pairs(ext.dropna(subset=["sequence"]), n_boot, seed)
            video_rows.append({"model": model, "videos": v["videos"],
                               "pain frame scores higher [95% CI]": _ci(v["pain_higher"], v["pain_higher_low"],
                                                                         v["pain_higher_high"]),
                               "pain probability, pain - rest frame [95% CI]": _ci(v["difference"], v["difference_low"],
                                                                                    v["difference_high"])})
    return {"scenario_gap": pd.DataFrame(rows), "scenario_gaps": pd.DataFrame(gap_rows),
            "cp_videos": pd.DataFrame(video_rows)}
