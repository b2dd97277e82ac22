"""Rater agreement: the ICC against Shrout and Fleiss's worked example, and `painsearch raters`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.icc import fleiss_category, icc2
from cluster.cli import main
from pipelines.errors import PainsearchError

# Shrout and Fleiss (1979), Table 2: six targets, four judges
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_icc_matches_the_published_example():
    r = icc2(SHROUT_FLEISS)
    assert round(r.icc2_1, 2) == 0.29 and round(r.icc2_k, 2) == 0.62  # Shrout and Fleiss, Table 4
    # the 95 % intervals as R's psych::ICC reports them for the same table
    assert np.allclose(r.ci95_2_1, (0.019, 0.761), atol=0.002)
    assert np.allclose(r.ci95_2_k, (0.071, 0.927), atol=0.002)
    assert (r.n_targets, r.n_raters) == (6, 4)


def test_the_category_is_that_of_the_raters_consensus():
    """The paper classes ICC(2,k) (FACS 0.751, 'excellent'): Shrout and Fleiss's table is low by ICC(2,1) (0.29)
    and fair to good by ICC(2,k) (0.62), and the report names the latter."""
    from analysis.icc import rater_agreement

    rows = [{"image": f"i{t}", "rater": f"r{j}", "stimulus": "injection", "facs": float(v), "ncapc": float(v),
             "wong_baker": float(v)} for t, row in enumerate(SHROUT_FLEISS) for j, v in enumerate(row)]
    out = rater_agreement(pd.DataFrame(rows))
    assert out["scales"]["facs"]["category"] == "fair to good"


def test_perfect_agreement_and_categories():
    r = icc2([[1, 1, 1], [5, 5, 5], [3, 3, 3]])
    assert r.icc2_1 == pytest.approx(1.0) and r.icc2_k == pytest.approx(1.0)
    assert [fleiss_category(v) for v in (0.2, 0.5, 0.9)] == ["low", "fair to good", "excellent"]
    with pytest.raises(PainsearchError, match="at least 2 targets and 2 raters"):
        icc2([[1, 2, 3]])


def test_raters_cli_on_the_phantom(tiny_phantom, capsys):
    csv = tiny_phantom / "cppain" / "ratings.csv"
    assert main(["raters", str(csv), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ratings = pd.read_csv(csv)
    assert set(out["scales"]) == {"facs", "ncapc", "wong_baker"}
    for r in out["scales"].values():
        assert set(r) >= {"icc2_1", "icc2_k", "ci95_2_1", "ci95_2_k", "n_targets", "n_raters"}
        assert r["n_raters"] == ratings["rater"].nunique() and r["n_targets"] == ratings["image"].nunique()
        assert r["ci95_2_1"][0] <= r["icc2_1"] <= r["ci95_2_1"][1]
    assert set(out["by_stimulus"]) == set(ratings["stimulus"].astype(str))
    aus = ratings[["au4", "au6", "au7", "au9", "au10", "au43"]]
    facs = aus["au4"] + aus[["au6", "au7"]].max(axis=1) + aus[["au9", "au10"]].max(axis=1) + aus["au43"]
    pain = (facs > 0).groupby(ratings["image"]).any()  # no pain only when every rater scored 0
    assert out["consensus_pain_share"] == pytest.approx(pain.mean()) and out["n_images"] == len(pain)
    for r in out["scales"].values():
        assert r["category"] == fleiss_category(r["icc2_k"])
    assert main(["raters", str(csv)]) == 0
    table = capsys.readouterr().out
    assert "ICC(2,1)" in table and "Wong-Baker" in table and "pain by consensus" in table


def test_raters_cli_bad_file(tmp_path, capsys):
    assert main(["raters", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
