"""Bootstrap intervals that resample subjects, not images: a subject's images are not independent.

`bootstrap_ci` gives a percentile interval of a metric of one model; `paired_bootstrap` the interval (and a
two-sided p-value) of the difference between two models scored on the same images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.scores import metrics_from, probs_of
from pipelines.shards.schema import subject_groups


def subject_members(df: pd.DataFrame) -> list[np.ndarray]:
    """Row indices of each subject of `df` (pseudonyms are per dataset)."""
    groups = np.asarray(subject_groups(df["dataset"].astype(str), df["subject"].astype(str)))
    _, inverse = np.unique(groups, return_inverse=True)
    return [np.flatnonzero(inverse == i) for i in range(inverse.max() + 1)] if len(groups) else []


def resamples(members: list[np.ndarray], n_boot: int, seed: int):
    """Row indices of `n_boot` bootstrap samples, each a draw of subjects with replacement."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])


def bootstrap_ci(df: pd.DataFrame, names: tuple[str, ...], n_boot: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of `names` (metrics of `analysis.scores.metrics_from`), subjects resampled."""
    y = df["label"].to_numpy().astype(int)
    probs = probs_of(df)
    draws: dict[str, list[float]] = {n: [] for n in names}
    for idx in resamples(subject_members(df), n_boot, seed):
        m = metrics_from(y[idx], probs[idx])
        for n in names:
            draws[n].append(m[n])
    return {n: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))) for n, v in draws.items()}


def paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, metric: Callable[[pd.DataFrame], float], n_boot: int = 1000,
                     seed: int = 0) -> dict[str, float]:
    """The difference metric(a) - metric(b) on the same images (rows aligned), its 95 % interval and a two-sided
    p-value (twice the share of resampled differences on the far side of 0, counting the observed difference among
    them: at least 2/(B+1), since B resamples cannot show a smaller one), subjects resampled."""
    diff = metric(a) - metric(b)
    draws = np.array([metric(a.iloc[idx]) - metric(b.iloc[idx]) for idx in resamples(subject_members(a), n_boot, seed)])
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return {"difference": float(diff), "ci_low": float("nan"), "ci_high": float("nan"), "p": float("nan")}
    far = min(int(np.sum(draws <= 0)), int(np.sum(draws >= 0)))
    p = min(1.0, 2 * (far + 1) / (len(draws) + 1))
    return {"difference": float(diff), "ci_low": float(np.percentile(draws, 2.5)),
            "ci_high": float(np.percentile(draws, 97.5)), "p": float(p)}
