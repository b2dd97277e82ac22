"""Folds: property tests over random studies (hypothesis), and the scenarios' rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import PainsearchError
from search.folds import make_folds

POOL = ("unbc", "mintpain")
EXTERNAL = ("cppain",)


@st.composite
def studies(draw):
    """Random image tables: datasets, subjects with 1-12 images each, labels mixed within subjects."""
    rows = []
    for ds in (*POOL, *EXTERNAL):
        n_subjects = draw(st.integers(4 if ds in POOL else 1, 9))
        for s in range(n_subjects):
            n = draw(st.integers(1, 12))
            p_pain = draw(st.floats(0.0, 1.0))
            labels = [int(draw(st.floats(0, 1)) < p_pain) for _ in range(n)]
            rows += [{"dataset": ds, "subject": f"s{s}", "label": y} for y in labels]
    df = pd.DataFrame(rows)
    # both classes must exist in the pool for any stratified split
    pool = df["dataset"].isin(POOL)
    df.loc[df.index[pool][0], "label"] = 0
    df.loc[df.index[pool][1], "label"] = 1
    df.insert(0, "image_id", [f"{i:06d}" for i in np.random.default_rng(0).permutation(len(df))])
    return df


def _subjects(meta: pd.DataFrame, ids) -> set[str]:
    m = meta.set_index("image_id").loc[sorted(ids)]
    return set(m["dataset"] + "/" + m["subject"])


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(studies(), st.integers(0, 10_000), st.sampled_from(["image_kfold", "subject_kfold", "external"]))
def test_fold_properties(meta, seed, scenario):
    try:
        folds = make_folds(meta, scenario, 3, seed, POOL, EXTERNAL)
    except PainsearchError as exc:  # a pool too small to split is refused, in one sentence
        assert "too few" in str(exc)
        return
    pool_ids = set(meta.loc[meta["dataset"].isin(POOL), "image_id"])
    for fold, f in folds.groupby("fold"):
        roles = {r: set(f.loc[f["role"] == r, "image_id"]) for r in ("train", "val", "test")}
        assert roles["train"] and roles["val"] and roles["test"]
        assert not roles["val"] & roles["test"] and not roles["train"] & roles["test"] and not roles["train"] & roles["val"]
        if scenario == "subject_kfold":
            assert not _subjects(meta, roles["train"] | roles["val"]) & _subjects(meta, roles["test"])
        if scenario in ("subject_kfold", "external"):  # validation by subject too
            assert not _subjects(meta, roles["train"]) & _subjects(meta, roles["val"])
        if scenario == "external":
            assert roles["train"] | roles["val"] == pool_ids
            assert roles["test"] == set(meta.loc[meta["dataset"].isin(EXTERNAL), "image_id"])
    if scenario != "external":  # every pool image is tested exactly once
        tests = folds.loc[folds["role"] == "test", "image_id"]
        assert tests.is_unique and set(tests) == pool_ids


@SETTINGS
@given(studies(), st.integers(0, 10_000))
def test_folds_depend_only_on_seed_and_ids(meta, seed):
    """Shuffling the rows changes nothing: folds are a function of (seed, ids, labels, subjects)."""
    for scenario in ("image_kfold", "subject_kfold"):
        try:
            a = make_folds(meta, scenario, 3, seed, POOL, EXTERNAL)
        except PainsearchError as exc:  # refused in one sentence; the shuffled rows are refused alike
            assert "too few" in str(exc)
            with pytest.raises(PainsearchError, match="too few"):
                make_folds(meta.sample(frac=1.0, random_state=1), scenario, 3, seed, POOL, EXTERNAL)
            continue
        b = make_folds(meta.sample(frac=1.0, random_state=1), scenario, 3, seed, POOL, EXTERNAL)
        pd.testing.assert_frame_equal(a, b)


def test_subject_folds_are_stratified_when_subjects_allow():
    rng = np.random.default_rng(0)
    rows = [{"dataset": "unbc", "subject": f"s{s}", "label": int(rng.random() < 0.3)} for s in range(40) for _ in range(10)]
    meta = pd.DataFrame(rows)
    meta.insert(0, "image_id", [f"{i:06d}" for i in range(len(meta))])
    folds = make_folds(meta, "subject_kfold", 5, 0, ("unbc",))
    test = folds[folds["role"] == "test"].merge(meta[["image_id", "label"]], on="image_id")
    shares = test.groupby("fold")["label"].mean()
    assert shares.max() - shares.min() < 0.1, shares


def test_missing_dataset_is_one_sentence():
    meta = pd.DataFrame({"image_id": ["a", "b"], "dataset": ["unbc", "unbc"], "subject": ["1", "2"], "label": [0, 1]})
    with pytest.raises(PainsearchError, match=r"hold no images of cppain .*study.external"):
        make_folds(meta, "external", 2, 0, ("unbc",), ("cppain",))
