"""The Python API for notebooks: a study's results, the report's tables and `predict`, as pandas DataFrames.

    from analysis.api import open_study, predict
    study = open_study("s3://bucket/results")
    study.searches, study.trials, study.predictions      # DataFrames
    study.epochs()                                       # every trial's every epoch
    study.tables()["results_by_model_and_scenario"]     # the report's tables
    study.optuna("weinet", "subject_kfold", 0)           # an optuna.Study
    study.tuner("weinet", "subject_kfold", 0).get_results()  # Tune's ResultGrid
    predict("s3://bucket/results", ["faces/"], model="weinet", scenario="subject_kfold")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.config import TARGET_RECALL
from analysis.results import Results, load
from search.layout import OPTUNA_JOURNAL, TRAIN_DIR, SearchKey


@dataclass
class Study:
    results: Results

    @property
    def searches(self) -> pd.DataFrame:
        return self.results.searches

    @property
    def trials(self) -> pd.DataFrame:
        return self.results.trials

    @property
    def predictions(self) -> pd.DataFrame:
        return self.results.predictions

    def epochs(self) -> pd.DataFrame:
        """One row per epoch of every trial of every search, as the trials logged them."""
        from pipelines.training.ray_train import read_epochs

        store, rows = self.results.store, []
        for key in self.results.keys():
            for trial in store.dirs(key.of(TRAIN_DIR)):
                rows += [{**key.as_dict(), "trial_id": trial, **e} for e in read_epochs(store.uri, key.of(TRAIN_DIR, trial))]
        return pd.DataFrame(rows)

    def tables(self, bootstrap: int = 1000) -> dict[str, pd.DataFrame]:
        """The report's tables (what `painsearch analyze` writes to tables/), without figures or LIME."""
        from analysis.comparisons import compare
        from analysis.report import chosen_settings
        from analysis.summary import per_fold, summary

        seed = self.results.config.get("seed", 0)
        return {"results_by_model_and_scenario": summary(self.predictions, n_boot=bootstrap, seed=seed),
                "results_by_fold": per_fold(self.predictions),
                "model_comparisons": compare(self.predictions, n_boot=bootstrap, seed=seed),
                "chosen_settings": chosen_settings(self.results)}

    def tuner(self, model: str, scenario: str, fold: int):
        """The search's Tune experiment restored as a `ray.tune.Tuner` with the study's own trainable:
        `.get_results()` is Tune's `ResultGrid` of its trials (`get_dataframe()`, `get_best_result()`)."""
        from search.config import StudyConfig
        from search.tuner import restored_tuner

        cfg = StudyConfig.model_validate(self.results.config)
        return restored_tuner(cfg, self.results.store, SearchKey(model, scenario, fold))

    def optuna(self, model: str, scenario: str, fold: int):
        """The search's Optuna study, read from its journal in the results store into memory (the local copy the
        journal is read from is removed)."""
        import tempfile

        import optuna
        from optuna.storages import InMemoryStorage, JournalStorage
        from optuna.storages.journal import JournalFileBackend

        key = SearchKey(model, scenario, fold)
        memory = InMemoryStorage()
        with tempfile.TemporaryDirectory(prefix="painsearch-optuna-") as folder:
            local = Path(folder) / OPTUNA_JOURNAL
            local.write_bytes(self.results.store.read_bytes(key.path, OPTUNA_JOURNAL))
            optuna.copy_study(from_study_name=key.slug, from_storage=JournalStorage(JournalFileBackend(str(local))),
                              to_storage=memory)
        return optuna.load_study(study_name=key.slug, storage=memory)


def open_study(uri: str, endpoint: str | None = None) -> Study:
    return Study(load(uri, endpoint))


def predict(source: str, inputs: list[str], model: str | None = None, scenario: str | None = None,
            fold: int | None = None, out: str | None = None, every: int | None = None,
            target_recall: float = TARGET_RECALL, names: str = "pseudonym", mapping: str | None = None) -> pd.DataFrame:
    """`painsearch predict` as a function: the predictions as a DataFrame (and its files under `out`, if given)."""
    from analysis.chosen_model import resolve
    from analysis.predict import predict as run

    return run(resolve(source, model, scenario, fold, target_recall=target_recall), inputs, out, every=every,
               names=names, mapping=mapping)
