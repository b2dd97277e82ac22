"""How far raters agree: ICC(2,1) and ICC(2,k), two-way random effects, absolute agreement.

Shrout and Fleiss (1979) case 2, with the 95 % intervals of McGraw and Wong (1996); checked against
Shrout and Fleiss's six-target, four-judge example in the tests. Categories after Fleiss (1986):
below 0.40 low, 0.40 to 0.75 fair to good, above 0.75 excellent; the category is that of ICC(2,k), the
reliability of the raters' consensus, which is what the paper classes (FACS 0.751, "excellent").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.errors import PainsearchError

SCALES = {"facs": "FACS score", "ncapc": "NCAPC", "wong_baker": "Wong-Baker"}


@dataclass(frozen=True)
class ICC:
    icc2_1: float
    icc2_k: float
    ci95_2_1: tuple[float, float]
    ci95_2_k: tuple[float, float]
    n_targets: int
    n_raters: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci95_2_1"], d["ci95_2_k"] = list(self.ci95_2_1), list(self.ci95_2_k)
        return d


def fleiss_category(icc: float) -> str:
    if not np.isfinite(icc):
        return "undefined"
    return "low" if icc < 0.40 else ("fair to good" if icc <= 0.75 else "excellent")


def icc2(table: np.ndarray, alpha: float = 0.05) -> ICC:
    """ICC(2,1) and ICC(2,k) of an n targets x k raters table with no missing cells."""
    x = np.asarray(table, dtype=float)
    n, k = x.shape
    if n < 2 or k < 2:
        raise PainsearchError(f"An ICC needs at least 2 targets and 2 raters with complete ratings, not {n} x {k}.")
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        single = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        average = (msr - mse) / (msr + (msc - mse) / n)
        # McGraw and Wong (1996), case 2A: a Satterthwaite approximation for the F distribution's df
        a = k * single / (n * (1 - single))
        b = 1 + k * single * (n - 1) / (n * (1 - single))
        v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
        f_l = stats.f.ppf(1 - alpha / 2, n - 1, v)
        f_u = stats.f.ppf(1 - alpha / 2, v, n - 1)
        lo = n * (msr - f_l * mse) / (f_l * (k * msc + (k * n - k - n) * mse) + n * msr)
        hi = n * (f_u * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_u * msr)
    lo_k, hi_k = (lo * k / (1 + lo * (k - 1)), hi * k / (1 + hi * (k - 1)))
    return ICC(float(single), float(average), (float(lo), float(hi)), (float(lo_k), float(hi_k)), n, k)


def _table(df: pd.DataFrame, scale: str) -> np.ndarray:
    wide = df.pivot_table(index="image", columns="rater", values=scale, aggfunc="mean")
    return wide.dropna().to_numpy()


def rater_agreement(ratings: pd.DataFrame) -> dict:
    """Per scale, overall and by stimulus type (the paper's Table 4), plus the consensus pain share."""
    from pipelines.labels import consensus_label
    from pipelines.sources.cppain import twice_rated

    twice = twice_rated(ratings)
    if twice:
        image, rater = next(iter(twice.items()))
        raise PainsearchError(
            f"The ratings rate {len(twice)} image(s) more than once by the same rater ({image} by {rater}, first); an ICC "
            f"needs one rating per image and rater: keep one of each and run again."
        )

    def per_scale(df: pd.DataFrame) -> dict:
        out = {}
        for scale in SCALES:
            table = _table(df, scale)
            if table.shape[0] >= 2 and table.shape[1] >= 2:
                icc = icc2(table)
                out[scale] = icc.to_dict() | {"category": fleiss_category(icc.icc2_k)}
        return out

    consensus = ratings.groupby("image")["facs"].apply(consensus_label)
    return {
        "scales": per_scale(ratings),
        "by_stimulus": {str(s): per_scale(g) for s, g in ratings.groupby("stimulus")},
        "consensus_pain_share": float(consensus.mean()),
        "n_images": int(consensus.size),
    }
