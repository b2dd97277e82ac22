"""Scenarios as fold assignments: which images train, validate and test in each outer fold.

A fold table has one row per (fold, image) that takes part: `fold`, `image_id`, `role` in
{train, val, test}. It depends only on the seed and the images' ids, labels and (pseudonymous)
subjects, never on their order, so a resumed or re-run study gets the same folds.

- image_kfold: stratified k folds over images of the pool.
- subject_kfold: stratified k folds over the pool's subjects; no subject on both sides.
- external: the whole pool trains, the external datasets test; k repeats with different seeds.
Validation is carved from each training split: by subject, except in image_kfold where it is by
image, as the test split is. Only validation ever steers a choice (Optuna, ASHA, early stopping).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from pipelines.errors import PainsearchError, choices
from pipelines.shards.schema import subject_groups
from search.layout import folds_file, read_parquet

ROLES = ("train", "val", "test")


def _sorted(meta: pd.DataFrame) -> pd.DataFrame:
    return meta.sort_values("image_id", kind="stable").reset_index(drop=True)


def _groups(meta: pd.DataFrame) -> np.ndarray:
    return np.asarray(subject_groups(meta["dataset"].astype(str), meta["subject"].astype(str)))


def _n_splits(wanted: int, labels: np.ndarray, groups: np.ndarray | None, what: str) -> int:
    counts = np.bincount(labels, minlength=2) if len(labels) else np.zeros(2, int)
    # by subject: scikit-learn needs no more folds than subjects, nor than images of the commoner class;
    # by image: every fold needs an image of each class
    units = min(len(np.unique(groups)), int(counts.max())) if groups is not None else int(counts.min())
    if units < 2:
        raise PainsearchError(
            f"The {what} has too few {'subjects' if groups is not None else 'images of its rarer class'} "
            f"({units}) to split; prepare more data or choose other datasets."
        )
    return min(wanted, units)


def _val_split(meta: pd.DataFrame, by_subject: bool, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over `meta` (a training split): the rows held out for validation."""
    labels = meta["label"].to_numpy().astype(int)
    k = max(2, int(round(1.0 / fraction)))
    if by_subject:
        groups = _groups(meta)
        k = _n_splits(k, labels, groups, "training split")
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        _, val_idx = next(splitter.split(np.zeros(len(meta)), labels, groups))
    else:
        if np.bincount(labels, minlength=2).min() >= k:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            _, val_idx = next(splitter.split(np.zeros(len(meta)), labels))
        else:  # too few of a class to stratify: a plain random share
            rng = np.random.default_rng(seed)
            val_idx = rng.choice(len(meta), size=max(1, int(round(len(meta) * fraction))), replace=False)
    mask = np.zeros(len(meta), dtype=bool)
    mask[val_idx] = True
    return mask


def _table(fold: int, ids: pd.Series, roles: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"fold": np.full(len(ids), fold, dtype=np.int32), "image_id": ids.to_numpy(), "role": roles})


def make_folds(*args, **kwargs) -> pd.DataFrame:
    """The fold table of one scenario (see the module docstring). `meta` needs image_id, label, dataset, subject."""
    with warnings.catch_warnings():  # scikit-learn warns when a class is rarer than the folds; we stratify as far as it goes
        warnings.simplefilter("ignore", UserWarning)
        return _make_folds(*args, **kwargs)


def _make_folds(meta: pd.DataFrame, scenario: str, n_folds: int, seed: int, pool: tuple[str, ...],
               external: tuple[str, ...] = (), val_fraction: float | None = None) -> pd.DataFrame:
    present = set(meta["dataset"])
    missing = [d for d in (*pool, *(external if scenario == "external" else ())) if d not in present]
    if missing:
        raise PainsearchError(
            f"The shards hold no images of {', '.join(missing)} (they hold {choices(sorted(present))}); "
            f"fix `study.pool` / `study.external` or prepare those datasets."
        )
    if val_fraction is None:  # the study config's default, defined there
        from search.config import StudyConfig

        val_fraction = StudyConfig.model_fields["val_fraction"].default
    data = _sorted(meta[meta["dataset"].isin(pool)])
    labels = data["label"].to_numpy().astype(int)
    parts = []
    if scenario in ("image_kfold", "subject_kfold"):
        by_subject = scenario == "subject_kfold"
        groups = _groups(data) if by_subject else None
        k = _n_splits(n_folds, labels, groups, "training pool")
        if by_subject:
            outer = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(data)), labels, groups)
        else:
            outer = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(data)), labels)
        for fold, (train_idx, test_idx) in enumerate(outer):
            train = data.iloc[train_idx].reset_index(drop=True)
            val = _val_split(train, by_subject, val_fraction, seed + 1000 + fold)
            parts.append(_table(fold, train["image_id"], np.where(val, "val", "train")))
            parts.append(_table(fold, data["image_id"].iloc[test_idx], np.full(len(test_idx), "test")))
    elif scenario == "external":
        test = _sorted(meta[meta["dataset"].isin(external)])
        for fold in range(n_folds):
            val = _val_split(data, True, val_fraction, seed + 1000 + fold)
            parts.append(_table(fold, data["image_id"], np.where(val, "val", "train")))
            parts.append(_table(fold, test["image_id"], np.full(len(test), "test")))
    else:
        raise PainsearchError(f"Unknown scenario {scenario!r}; choose from image_kfold, subject_kfold, external.")
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["fold", "role", "image_id"], kind="stable").reset_index(drop=True)


def fold_table(store, key) -> pd.DataFrame:
    """The rows of one search's fold, as the study wrote them: image_id, role, dataset, subject, label."""
    folds = read_parquet(store.read_bytes(folds_file(key.scenario)))
    return folds[folds["fold"] == key.fold]


def role_ids(fold: pd.DataFrame) -> dict[str, set[str]]:
    """A fold table's image ids by role: train, val, test."""
    return {role: set(fold.loc[fold["role"] == role, "image_id"]) for role in ROLES}


def fold_datasets(shards: str, endpoint: str | None, ids: dict[str, set[str]], block_rows: int = 256):
    """(train, val) Ray Datasets of one fold.

    The fold's rows are read from the shards once per trial (pyarrow, local or S3) and handed to Ray
    Data as blocks in the object store: every epoch then streams them from memory, decoded by Ray Data
    tasks, instead of reading and filtering the shard files again (or planning a read per trial)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray.data

    from pipelines.shards.read import read_rows

    table = read_rows(shards, endpoint, ids["train"] | ids["val"], ["image", "label"])

    def part(role: str):
        keep = pc.is_in(table.column("image_id"), value_set=pa.array(sorted(ids[role]), pa.string()))
        rows = table.filter(keep).select(["image", "label"])
        blocks = [rows.slice(i, block_rows) for i in range(0, max(rows.num_rows, 1), block_rows)]
        return ray.data.from_arrow(blocks)

    return part("train"), part("val")
