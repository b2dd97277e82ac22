"""The study config: which networks, scenarios and folds, how hard to search, where trials run.

A study config file holds `data:` (the prepare settings, see pipelines.config) and `study:` (these).
Every default lives here once; `painsearch search run --help` and the README point at this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines import retries
from pipelines.config import Strict, TrainSettings, load_yaml, merge, resolve_path, validate
from pipelines.errors import PainsearchError, choices
from pipelines.models.specs import MODEL_NAMES as MODELS
from pipelines.sources.base import CP_PAIN, PAIN_DB
from search.space import SpaceConfig

Scenario = Literal["image_kfold", "subject_kfold", "external"]
SCENARIOS: tuple[str, ...] = ("image_kfold", "subject_kfold", "external")


class SearchConfig(Strict):
    """How each (model, scenario, fold) search runs."""

    trials: int = Field(8, ge=1, description="Optuna trials per search")
    max_concurrent_trials: int = Field(2, ge=1, description="trials at once within one search")
    concurrent_searches: int = Field(2, ge=1, description="searches at once; together they fill the cluster")
    metric: Literal["val_f1_macro", "val_accuracy", "val_loss"] = "val_f1_macro"
    grace_period: int = Field(1, ge=1, description="ASHA: epochs every trial gets")
    reduction_factor: int = Field(3, ge=2, description="ASHA: keep the top 1/reduction_factor at each rung")
    scheduler: Literal["asha", "none"] = "asha"
    searcher: Literal["optuna", "random"] = "optuna"
    startup_trials: int = Field(10, ge=1, description="Optuna TPE: random trials before it models the space "
                                                        "(Optuna's default; lower it for small budgets)")
    time_budget_s: float | None = Field(None, gt=0, description="wall-clock budget per search; None: the trial count")
    retries: int = Field(retries.TRIAL, ge=0, description="a trial that raises is run again this many times, then recorded as failed")
    space: SpaceConfig = SpaceConfig()
    space_by_model: dict[str, SpaceConfig] = Field(
        default_factory=dict, description="per network, bounds that take the place of `space`'s for it")
    verbose: int = Field(0, ge=0, le=2, description="Tune's own progress table besides painsearch's lines: 0 off, "
                                                     "1 status, 2 every result")


class ResourcesConfig(Strict):
    """What one trial takes, and what runs it (search.runners)."""

    workers_per_trial: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0, description="0: CPU only; fractions let small networks share a card")
    runner: Literal["auto", "inline", "ray_train"] = Field(
        "auto", description="auto: inline (the loop in the trial's own reused process) for one worker per trial, "
                            "ray_train (a Ray Train run) for several")
    placement: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how a Ray Train run places its workers; STRICT_SPREAD puts each on its own node")

    @model_validator(mode="after")
    def _check(self) -> ResourcesConfig:
        if self.runner == "inline" and self.workers_per_trial > 1:
            raise ValueError(f"asks for the inline runner with {self.workers_per_trial} workers per trial; the inline "
                             f"runner trains in one process: set `runner: ray_train` or `auto`, or one worker")
        return self


class StudyConfig(Strict):
    """Everything `painsearch search run` needs."""

    shards: str = Field(description="the prepared shards (default: the `data.out` of the same file)")
    storage: str = Field("results", description="the results store: a folder or s3://bucket/prefix")
    s3_endpoint: str | None = None
    models: tuple[str, ...] = tuple(MODELS)
    scenarios: tuple[Scenario, ...] = SCENARIOS
    folds: int = Field(5, ge=2, description="outer folds of the k-fold scenarios, and repeats of `external`")
    val_fraction: float = Field(0.2, gt=0.0, lt=0.9, description="share of each training split held out for validation")
    pool: tuple[str, ...] = Field(PAIN_DB, description="datasets that form the training pool (PAIN-DB)")
    external: tuple[str, ...] = Field(CP_PAIN, description="datasets of the external test set (CP-PAIN)")
    seed: int = 0
    refit: bool = Field(False, description="after each search, retrain the chosen settings on training + validation "
                                           "for the chosen trial's epochs, and score the test split with that model")
    train: TrainSettings = TrainSettings()
    search: SearchConfig = SearchConfig()
    resources: ResourcesConfig = ResourcesConfig()

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        for m in self.models:
            if m not in MODELS:
                raise ValueError(f"names an unknown network {m!r}; choose from {choices(MODELS)}")
        for m in self.search.space_by_model:
            if m not in self.models:
                raise ValueError(f"sets `search.space_by_model.{m}`, a network the study does not train; "
                                 f"choose from its `models`: {choices(self.models)}")
        if len(set(self.models)) != len(self.models) or len(set(self.scenarios)) != len(self.scenarios):
            raise ValueError("lists a network or scenario twice")
        if set(self.pool) & set(self.external):
            raise ValueError("uses a dataset both in `pool` and in `external`")
        if not self.pool:
            raise ValueError("has an empty `pool`; name the datasets to train on")
        if "external" in self.scenarios and not self.external:
            raise ValueError("asks for the `external` scenario but names no `external` datasets")
        return self

    @property
    def metric_mode(self) -> str:
        return "min" if self.search.metric == "val_loss" else "max"


def study_config(data: dict[str, Any], where: str = "the study settings") -> StudyConfig:
    return validate(StudyConfig, data, where)


def load_study_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """The `study:` section of a config file; relative paths are taken from the file's folder."""
    path = Path(path)
    raw = load_yaml(path)
    study = raw.get("study")
    if not isinstance(study, dict):
        raise PainsearchError(f"{path} has no `study:` section; add one (see configs/smoke.yaml) to run a search.")
    study = merge(study, overrides or {})
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    base = path.parent.resolve()
    if not study.get("shards"):
        if not data.get("out"):
            raise PainsearchError(f"In {path}, `study.shards` is not set and there is no `data.out`; name the prepared shards.")
        study["shards"] = data["out"]
    study["shards"] = resolve_path(base, study["shards"])
    if "storage" in study and (overrides or {}).get("storage") is None:
        study["storage"] = resolve_path(base, study["storage"])
    if isinstance(study.get("train"), dict) and study["train"].get("weights_dir"):
        study["train"] = {**study["train"], "weights_dir": resolve_path(base, study["train"]["weights_dir"])}
    study.setdefault("s3_endpoint", data.get("s3_endpoint"))
    return study_config(study, where=str(path))
