"""One search: Optuna (TPE, seeded) proposes, ASHA stops early, on one (model, scenario, fold).

A search is restartable at any moment: Tune keeps its experiment state (trial statuses and the
searcher's state) in the results store and `Tuner.restore` continues it; a finished search leaves
`done.json`, written last, and is never run again. After the last trial the best trial's weights
score the test split; the other trials keep their metrics only.
"""

from __future__ import annotations

import io
import json
import os
import time
from typing import Any

import pandas as pd

from pipelines.storage import Store
from search.config import StudyConfig
from search.space import space_for
from search.trial import SearchKey, TrialContext, predict_test, trial_fn

DONE = "done.json"
TUNE_DIR = "tune"
TRAIN_DIR = "train"
BEST_DIR = "best"
PREDICTIONS = "predictions.parquet"
TRIALS = "trials.csv"
# Tune snapshots its experiment state at most this often (s): small, so a killed driver loses little.
SNAPSHOT_PERIOD_S = "1"
# The trial function only waits on its Ray Train run, whose workers hold the real resources.
TRIAL_DRIVER = {"cpu": 0, "memory": 2**26}  # Tune refuses an empty request; memory keeps it non-empty


def context_for(cfg: StudyConfig, results: str, key: SearchKey) -> TrialContext:
    from pipelines.models import get_spec

    train = cfg.train.model_dump()
    train["seed"] = cfg.seed
    spec = get_spec(key.model)
    train["size"] = cfg.train.size or spec.paper_size
    if not spec.pretrained:  # `weights: imagenet` means ImageNet where the network has it
        train["weights"] = "none"
    return TrialContext(results=results, endpoint=cfg.s3_endpoint, shards=cfg.shards, key=key, metric=cfg.search.metric,
                        train=train, workers=cfg.resources.workers_per_trial,
                        cpus_per_worker=cfg.resources.cpus_per_worker, gpus_per_worker=cfg.resources.gpus_per_worker)


def _searcher(cfg: StudyConfig, seed: int):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    if cfg.search.searcher == "optuna":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.search.startup_trials)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    return OptunaSearch(sampler=sampler)  # the sampler carries the seed


def _scheduler(cfg: StudyConfig, max_epochs: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if cfg.search.scheduler == "none" or max_epochs <= 1:
        return FIFOScheduler()
    return ASHAScheduler(time_attr="training_iteration", max_t=max_epochs,
                         grace_period=min(cfg.search.grace_period, max_epochs), reduction_factor=cfg.search.reduction_factor)


def _trainable(ctx: TrialContext):
    """`trial_fn` with this search's context, under a name of its own: Tune registers trainables by name
    per Ray job, so concurrent searches sharing one name would run each other's trials."""
    context = ctx.to_dict()

    def trainable(config: dict[str, Any]) -> None:
        trial_fn(config, context)

    trainable.__name__ = trainable.__qualname__ = f"trial_{ctx.key.slug}"
    return trainable


def _tuner(cfg: StudyConfig, store: Store, key: SearchKey, ctx: TrialContext):
    from ray import tune

    space = space_for(key.model, cfg.train.weights == "imagenet", cfg.search.space, cfg.search.space_by_model.get(key.model))
    trainable = tune.with_resources(_trainable(ctx), TRIAL_DRIVER)
    path = store.path(key.path, TUNE_DIR, key.slug)
    if tune.Tuner.can_restore(path, storage_filesystem=store.fs):
        return tune.Tuner.restore(path, trainable, storage_filesystem=store.fs, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False), True
    seed = cfg.seed * 1000 + sum(map(ord, f"{key}")) % 1000
    return tune.Tuner(
        trainable,
        param_space=space.tune(),
        tune_config=tune.TuneConfig(
            metric=cfg.search.metric, mode=cfg.metric_mode, num_samples=cfg.search.trials,
            max_concurrent_trials=cfg.search.max_concurrent_trials, search_alg=_searcher(cfg, seed),
            # a fresh actor per trial: a trial that ASHA stops is still blocked in its Ray Train run, so its
            # actor cannot be reset for the next trial, which then failed to start and hung the search for
            # Tune's 600 s clean-up (measured; test_trials_that_tune_stops_end_cleanly)
            reuse_actors=False,
            scheduler=_scheduler(cfg, space.max_epochs), time_budget_s=cfg.search.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=key.slug, storage_path=store.path(key.path, TUNE_DIR), storage_filesystem=store.fs,
            failure_config=tune.FailureConfig(max_failures=cfg.search.retries), verbose=cfg.search.verbose,
        ),
    ), False


def _attempts(store: Store, key: SearchKey) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in store.list(key.path, "attempts"):
        rec = json.loads(store.read_bytes(key.path, "attempts", f))
        out.setdefault(rec["trial_id"], []).append(rec)
    return out


def _trial_rows(results, cfg: StudyConfig, store: Store, key: SearchKey) -> pd.DataFrame:
    metric, mode = cfg.search.metric, cfg.metric_mode
    attempts = _attempts(store, key)
    rows = []
    for r in results:
        df = r.metrics_dataframe if r.metrics_dataframe is not None else pd.DataFrame()
        trial_id = (r.metrics or {}).get("trial_id")
        params = {k: v for k, v in (r.config or {}).items() if not k.startswith("_")}
        best = None
        if metric in df.columns and df[metric].notna().any():
            best = float(df[metric].max() if mode == "max" else df[metric].min())
        fails = attempts.get(trial_id, [])
        rows.append({
            "trial_id": trial_id, "status": "failed" if r.error else "ok", **params,
            "epochs_run": int(df["epoch"].max() + 1) if "epoch" in df.columns and len(df) else 0,
            f"best_{metric}": best, "failed_attempts": len(fails),
            "error_kind": fails[-1]["kind"] if (r.error and fails) else ("error" if r.error else ""),
            "error": (fails[-1]["error"] if fails else str(r.error))[:500] if r.error else "",
            "path": r.path,
        })
    return pd.DataFrame(rows)


def _checkpoint_dirs(store: Store, key: SearchKey, trial_id: str) -> list[str]:
    return [d for d in store.dirs(key.path, TRAIN_DIR, trial_id)
            if d.startswith("checkpoint_") and store.exists(key.path, TRAIN_DIR, trial_id, d, "model.h5")]


def run_search(cfg_data: dict[str, Any], results: str, key_data: dict[str, Any]) -> dict[str, Any]:
    """Run (or continue) one search to its end; return what `done.json` says. Runs as a Ray task."""
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = SNAPSHOT_PERIOD_S
    from pipelines.storage import open_store

    cfg = StudyConfig.model_validate(cfg_data)
    key = SearchKey(**key_data)
    store = open_store(results, cfg.s3_endpoint)
    if store.exists(key.path, DONE):
        return json.loads(store.read_bytes(key.path, DONE))
    started = time.time()
    ctx = context_for(cfg, results, key)
    tuner, restored = _tuner(cfg, store, key, ctx)
    grid = tuner.fit()
    trials = _trial_rows(list(grid), cfg, store, key)
    metric_col = f"best_{cfg.search.metric}"
    ok = trials[(trials["status"] == "ok") & trials[metric_col].notna()] if len(trials) else trials
    done: dict[str, Any] = {
        "model": key.model, "scenario": key.scenario, "fold": key.fold, "metric": cfg.search.metric,
        "trials": int(len(trials)), "failed_trials": int((trials["status"] == "failed").sum()) if len(trials) else 0,
        "restored": restored, "seconds": None,
    }
    if len(ok):
        best = ok.sort_values(metric_col, ascending=cfg.metric_mode == "min", kind="stable").iloc[0]
        best_id = str(best["trial_id"])
        ckpts = _checkpoint_dirs(store, key, best_id)
        if not ckpts:
            raise RuntimeError(f"the best trial {best_id} of {key} kept no checkpoint")
        ckpt = sorted(ckpts)[-1]
        for name in store.list(key.path, TRAIN_DIR, best_id, ckpt):
            store.write_bytes(store.read_bytes(key.path, TRAIN_DIR, best_id, ckpt, name), key.path, BEST_DIR, name)
        params = {k: best[k] for k in ("learning_rate", "epochs", "finetune_depth") if k in best and pd.notna(best[k])}
        store.write_bytes(json.dumps({"trial_id": best_id, "params": params, cfg.search.metric: float(best[metric_col]),
                                      "checkpoint": ckpt}, default=float).encode(), key.path, BEST_DIR, "trial.json")
        import ray

        cpus = max(cfg.resources.cpus_per_worker, 0.5)
        preds = ray.get(ray.remote(num_cpus=cpus, max_retries=1)(predict_test).remote(
            ctx.to_dict(), params, f"{key.path}/{BEST_DIR}/model.h5"))
        store.write_bytes(preds, key.path, PREDICTIONS)
        for other in trials["trial_id"]:  # the rest keep metrics only
            if str(other) != best_id:
                for d in _checkpoint_dirs(store, key, str(other)):
                    store.delete_dir(key.path, TRAIN_DIR, str(other), d)
        done.update({"status": "ok", "best_trial": best_id, "best_score": float(best[metric_col]), "params": params})
    else:
        done.update({"status": "failed", "best_trial": None, "best_score": None,
                     "error": "; ".join(sorted(set(trials["error"]))) if len(trials) else "no trial ran"})
    store.write_bytes(trials.drop(columns=["path"], errors="ignore").to_csv(index=False).encode(), key.path, TRIALS)
    done["seconds"] = time.time() - started
    store.write_bytes(json.dumps(done, default=float).encode(), key.path, DONE)
    return done


def read_trials(store: Store, key: SearchKey) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(store.read_bytes(key.path, TRIALS)), dtype={"trial_id": str})
