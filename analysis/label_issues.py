"""Which pool frames are most likely mislabelled: cleanlab's confident learning on the study's out-of-fold scores.

The paper warns that frames taken from videos may carry imprecise labels (a frame labelled by its video's
moment, a PSPI threshold on a frame between two expressions). A k-fold scenario scores every pool image exactly
once, by a network that never trained on it: out-of-fold probabilities for the whole pool, which is what
confident learning needs. Subject folds are preferred (a network cannot have learned the person either), image
folds stand in when a study has no subject folds; an image's probabilities are averaged over the study's
networks. cleanlab (`cleanlab.filter.find_label_issues`) flags the frames whose given label its estimate of the
label noise finds least likely; they are ranked by self-confidence (the probability of the given label).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.scores import probs_of

SCENARIO_PREFERENCE = ("subject_kfold", "image_kfold")
TOP = 10  # frames listed per dataset in the report
COLUMNS = ["dataset", "rank", "image_id", "subject", "label", "p_given_label", "label_quality", "scenario", "networks"]


def out_of_fold(preds: pd.DataFrame) -> tuple[str, pd.DataFrame] | None:
    """The preferred k-fold scenario the study ran and one row per pool image: its probabilities averaged over
    networks. None when the study ran no k-fold scenario."""
    scenario = next((s for s in SCENARIO_PREFERENCE if (preds["scenario"] == s).any()), None)
    if scenario is None:
        return None
    p = preds[preds["scenario"] == scenario]
    probs = sorted(c for c in p.columns if c.startswith("prob_"))
    one = p.groupby("image_id", as_index=False, sort=True).agg(
        {**{c: "mean" for c in probs}, "label": "first", "dataset": "first", "subject": "first", "model": "nunique"})
    return scenario, one.rename(columns={"model": "networks"})


def label_issues(preds: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """`label_issues`: every flagged frame, ranked within its dataset (most likely mislabelled first);
    `label_issue_counts`: per dataset, the images scored and the share flagged."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    empty = {"label_issues": pd.DataFrame(columns=COLUMNS),
             "label_issue_counts": pd.DataFrame(columns=["dataset", "images", "flagged", "share", "scenario"])}
    found = out_of_fold(preds)
    if found is None:
        return empty
    scenario, oof = found
    labels = oof["label"].to_numpy().astype(int)
    probs = probs_of(oof)
    if len(np.unique(labels)) < probs.shape[1]:  # confident learning needs every class among the given labels
        return empty
    probs = probs / probs.sum(axis=1, keepdims=True)
    flagged = np.zeros(len(oof), bool)
    flagged[find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)] = True
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    table = oof.assign(p_given_label=probs[np.arange(len(oof)), labels], label_quality=quality, scenario=scenario)
    issues = table[flagged].sort_values(["dataset", "label_quality", "image_id"], kind="stable")
    issues.insert(1, "rank", issues.groupby("dataset").cumcount() + 1)
    counts = table.assign(flagged=flagged).groupby("dataset", as_index=False).agg(
        images=("image_id", "count"), flagged=("flagged", "sum"))
    counts["share"] = counts["flagged"] / counts["images"]
    counts["scenario"] = scenario
    return {"label_issues": issues[COLUMNS].reset_index(drop=True), "label_issue_counts": counts}


def top_frames(issues: pd.DataFrame, top: int = TOP) -> pd.DataFrame:
    """The `top` most likely mislabelled frames of each dataset, as the report lists them."""
    return issues[issues["rank"] <= top]
