"""The results store's layout: every file name, folder and path of a study, and the predictions schema.

Writers (search/) and readers (analysis/, benchmarks/) both use these names; nothing else spells them.

  study.json                         the resolved config, versions, the protocol; written first
  lease.json                         which driver runs the study now (holder, host, process, heartbeat)
  folds/<scenario>.parquet           fold, image_id, role (train/val/test), dataset, subject (pseudonym), label
  searches/<model>/<scenario>/fold-<k>/
    tune/<model>-<scenario>-fold<k>/ Tune's experiment state and per-trial results (restorable), TensorBoard events
    optuna.journal                   the search's Optuna study (JournalStorage): optuna-dashboard and optuna.load_study
    train/<trial_id>/epochs/*.json   every epoch's metrics of every trial
    train/<trial_id>/checkpoint_*/   the chosen trial's kept checkpoints only (its best epoch and its last)
    attempts/<trial_id>-<n>.json     each failed attempt of a trial: error, kind (error, out_of_memory)
    timing/<trial_id>-<n>.json       how each ended run of a trial went (n counts reruns): wall, set-up and `fit`
                                     time of a run whose trial function returned; for a run Tune ended (ASHA, the
                                     time budget), Tune's wall, written by Tune's side (`recorded_by`)
    trials.csv                       one row per trial: Tune's number for it, hyperparameters, best validation
                                     score and epoch, status
    best/chosen.h5                   the chosen trial's weights at its best validation epoch
    best/refit.h5                    with `study.refit`: the chosen settings retrained on training + validation
    best/trial.json                  the choice: trial, epoch, settings, which weights scored the test split
    refit/epochs/*.json              with `study.refit`: the refit run's epochs
    predictions.parquet              test images: image_id, dataset, subject, label, prob_<c>, pred
    val_predictions.parquet          validation images, same columns, scored with best/chosen.h5 (also under
                                     `study.refit`: the refit model trained on them): what the report's operating
                                     point and post-hoc calibration are fitted on, never the test split
    done.json                        written last: status (ok/failed), best score, trial counts
  summary.csv                        one row per finished search

Subjects appear only as the shards' keyed pseudonyms.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# a run's own folder (train/<trial_id>/, refit/) is laid out by the training code that writes it
from pipelines.training.ray_train import EPOCHS_DIR, epoch_file  # noqa: F401

STUDY = "study.json"
LEASE = "lease.json"
SUMMARY = "summary.csv"
FOLDS_DIR = "folds"
SEARCHES_DIR = "searches"
FORMAT = "painsearch-results"
FORMAT_VERSION = 1

TUNE_DIR = "tune"
OPTUNA_JOURNAL = "optuna.journal"
TRAIN_DIR = "train"
ATTEMPTS_DIR = "attempts"
TIMING_DIR = "timing"
TRIALS = "trials.csv"
BEST_DIR = "best"
CHOSEN_WEIGHTS = "chosen.h5"
REFIT_WEIGHTS = "refit.h5"
CHOICE = "trial.json"
REFIT_DIR = "refit"
PREDICTIONS = "predictions.parquet"
VAL_PREDICTIONS = "val_predictions.parquet"
DONE = "done.json"


def folds_file(scenario: str) -> str:
    return f"{FOLDS_DIR}/{scenario}.parquet"


@dataclass(frozen=True)
class SearchKey:
    """One search: a network on one fold of one scenario."""

    model: str
    scenario: str
    fold: int

    @property
    def path(self) -> str:
        return f"{SEARCHES_DIR}/{self.model}/{self.scenario}/fold-{self.fold}"

    @property
    def slug(self) -> str:
        return f"{self.model}-{self.scenario}-fold{self.fold}"

    def __str__(self) -> str:
        return f"{self.model} {self.scenario} fold {self.fold}"

    def of(self, *parts: str) -> str:
        """A path inside this search's folder."""
        return "/".join([self.path, *parts])

    def trial_run(self, trial_id: str) -> str:
        """Where a trial's run keeps its epochs and checkpoints."""
        return self.of(TRAIN_DIR, trial_id)

    def as_dict(self) -> dict:
        return {"model": self.model, "scenario": self.scenario, "fold": self.fold}


def search_keys(models, scenarios, folds: int) -> list[SearchKey]:
    """Every search of a study, in the order they start: fold-major, so early results span all models."""
    return [SearchKey(m, s, k) for k in range(folds) for s in scenarios for m in models]


def numbered(trial_id: str, n: int) -> str:
    """The file of a trial's n-th attempt or run (attempts/, timing/)."""
    return f"{trial_id}-{n}.json"


def trials_of(names: list[str]) -> set[str]:
    """The trials that the numbered files (see `numbered`) belong to."""
    return {f.rsplit("-", 1)[0] for f in names}


def of_trial(names: list[str], trial_id: str) -> list[str]:
    """The numbered files (see `numbered`) that belong to `trial_id`."""
    return [f for f in names if f.startswith(f"{trial_id}-")]


def predictions_schema(n_classes: int) -> pa.Schema:
    return pa.schema([pa.field("image_id", pa.string()), pa.field("dataset", pa.string()),
                      pa.field("subject", pa.string()), pa.field("label", pa.int8()),
                      *[pa.field(f"prob_{c}", pa.float32()) for c in range(n_classes)], pa.field("pred", pa.int8())])


def predictions_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table.cast(predictions_schema(sum(1 for n in table.column_names if n.startswith("prob_")))), buf)
    return buf.getvalue()


def read_parquet(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


def read_csv(data: bytes) -> pd.DataFrame:
    """A table of the store; trial ids stay strings (an all-digit id would otherwise become a number)."""
    return pd.read_csv(io.BytesIO(data), dtype={"trial_id": str, "best_trial": str})
