"""One search: Optuna (TPE, seeded) proposes, ASHA stops early, on one (model, scenario, fold).

A search is restartable at any moment: Tune keeps its experiment state (trial statuses and the
searcher's state) in the results store and `Tuner.restore` continues it; a finished search leaves
`done.json`, written last, and is never run again. After the last trial, the chosen trial's weights at
its best validation epoch (or, with `study.refit`, the chosen settings retrained on training +
validation) score the test split; the other trials keep their metrics only.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any

import pandas as pd

from pipelines import retries
from pipelines.errors import PainsearchError
from pipelines.storage import Store
from pipelines.training import checkpoint
from search.config import StudyConfig
from search import optuna_store, tune_snapshot
from search.early_stopping import scheduler
from search.layout import (ATTEMPTS_DIR, BEST_DIR, CHOICE, CHOSEN_WEIGHTS, DONE, PREDICTIONS, TRAIN_DIR, TRIALS,
                           TUNE_DIR, VAL_PREDICTIONS, SearchKey, read_csv)
from search.runners import checkpoint_dirs, kept_states, runner_for
from search.scoring import refit, score_splits
from search.space import params_of, space_for
from search.trial import TrialContext, error_kind, timing_callback, trial_fn

# Tune snapshots its experiment state at most this often (s): small, so a killed driver loses little.
SNAPSHOT_PERIOD_S = "1"
# Under Ray Train the trial function only waits on its run, whose workers hold the real resources.
RAY_TRAIN_DRIVER = {"cpu": 0, "memory": 2**26}  # Tune refuses an empty request; memory keeps it non-empty


def context_for(cfg: StudyConfig, results: str, key: SearchKey) -> TrialContext:
    from pipelines.models import get_spec

    train = cfg.train.model_dump()
    train["size"] = cfg.train.size or get_spec(key.model).paper_size
    r = cfg.resources
    return TrialContext(results=results, endpoint=cfg.s3_endpoint, shards=cfg.shards, key=key, metric=cfg.search.metric,
                        train=train, seed=cfg.seed, workers=r.workers_per_trial, cpus_per_worker=r.cpus_per_worker,
                        gpus_per_worker=r.gpus_per_worker, runner=runner_for(r.runner, r.workers_per_trial),
                        placement=r.placement)


def trial_resources(ctx: TrialContext) -> dict[str, float]:
    """What Tune reserves for a trial's actor: an inline trial trains there, a Ray Train trial only waits."""
    if ctx.runner == "inline":
        return {"cpu": ctx.cpus_per_worker, **({"gpu": ctx.gpus_per_worker} if ctx.gpus_per_worker else {})}
    return RAY_TRAIN_DRIVER


def _searcher(cfg: StudyConfig, seed: int, store: Store, key: SearchKey):
    import optuna

    from search.optuna_searcher import ResumableOptunaSearch

    if cfg.search.searcher == "optuna":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.search.startup_trials)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    # the sampler carries the seed; the study is kept in the results store (search.optuna_store)
    return ResumableOptunaSearch(sampler=sampler, study_name=key.slug, storage=optuna_store.storage(store, key))


def _trainable(ctx: TrialContext):
    """`trial_fn` with this search's context, under a name of its own: Tune registers trainables by name
    per Ray job, so concurrent searches sharing one name would run each other's trials. An inline trial's
    actor loads TensorFlow before its first trial begins (the actor's start-up, kept once for all the
    trials it runs, and recorded apart from theirs)."""
    context = ctx.to_dict()
    inline = ctx.runner == "inline"

    def trainable(config: dict[str, Any]) -> None:
        import sys

        t0, start_s = time.time(), 0.0
        if inline and "tensorflow" not in sys.modules:
            import gc

            import pipelines.models.build  # noqa: F401  (TensorFlow, tf-keras and the builders)

            # what the imports made lives as long as the actor: out of the collector's way, so that the collection
            # after each trial (pipelines/training/keras_state.py) scans only what trials made
            gc.freeze()
            start_s = time.time() - t0
        trial_fn(config, context, actor_start_s=start_s)

    trainable.__name__ = trainable.__qualname__ = f"trial_{ctx.key.slug}"
    return trainable


def _tuner(cfg: StudyConfig, store: Store, key: SearchKey, ctx: TrialContext):
    from ray import tune

    space = space_for(key.model, cfg.train.weights == "imagenet", cfg.search.space, cfg.search.space_by_model.get(key.model))
    trainable = tune.with_resources(_trainable(ctx), trial_resources(ctx))
    path = store.path(key.path, TUNE_DIR, key.slug)
    resumed = tune.Tuner.can_restore(path, storage_filesystem=store.fs)
    optuna_store.begin(store, key, resumed)  # before the searcher opens the journal
    if resumed:
        tune_snapshot.reconcile(store, key.path, TUNE_DIR, key.slug)  # a snapshot whose upload was cut short
        # the space again, although Tune keeps its searcher: a snapshot cut short may hold no searcher, which is then
        # rebuilt from the space and the journal (search.optuna_searcher)
        return tune.Tuner.restore(path, trainable, param_space=space.tune(), storage_filesystem=store.fs,
                                  resume_unfinished=True, resume_errored=True, restart_errored=False), True
    seed = cfg.seed * 1000 + sum(map(ord, f"{key}")) % 1000
    return tune.Tuner(
        trainable,
        param_space=space.tune(),
        tune_config=tune.TuneConfig(
            metric=cfg.search.metric, mode=cfg.metric_mode, num_samples=cfg.search.trials,
            max_concurrent_trials=cfg.search.max_concurrent_trials, search_alg=_searcher(cfg, seed, store, key),
            # an inline trial stops at an epoch's report, so its actor is free for the next trial with TensorFlow and
            # the fold loaded; a trial that Tune stops is still blocked in its Ray Train run, so its actor cannot be
            # reset in time and each Ray Train trial gets a fresh one (test_trials_that_tune_stops_end_cleanly)
            reuse_actors=ctx.runner == "inline",
            scheduler=scheduler(cfg, space.max_epochs), time_budget_s=cfg.search.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=key.slug, storage_path=store.path(key.path, TUNE_DIR), storage_filesystem=store.fs,
            failure_config=tune.FailureConfig(max_failures=cfg.search.retries), verbose=cfg.search.verbose,
            callbacks=[optuna_store.sync_callback(store, key), timing_callback(store, key)],
        ),
    ), False


def restored_tuner(cfg: StudyConfig, store: Store, key: SearchKey):
    """A finished or stopped search's Tune experiment as a `ray.tune.Tuner`, restored with the search's own
    trainable (Tune needs it to restore a function trainable): `get_results()` gives its `ResultGrid`. To run a
    search on, use `painsearch search run --resume`, which keeps the results store in step with Tune."""
    from ray import tune

    ctx = context_for(cfg, store.uri, key)
    trainable = tune.with_resources(_trainable(ctx), trial_resources(ctx))
    return tune.Tuner.restore(store.path(key.path, TUNE_DIR, key.slug), trainable, storage_filesystem=store.fs)


def _attempts(store: Store, key: SearchKey) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in store.list(key.path, ATTEMPTS_DIR):
        rec = json.loads(store.read_bytes(key.path, ATTEMPTS_DIR, f))
        out.setdefault(rec["trial_id"], []).append(rec)
    return out


def best_epoch(epochs: pd.DataFrame, metric: str, mode: str) -> tuple[float | None, int | None]:
    """(best validation score, the first epoch that reached it) of one trial's per-epoch results."""
    if metric not in epochs.columns or not epochs[metric].notna().any():
        return None, None
    scores = epochs[metric] if mode == "max" else -epochs[metric]
    at = scores.idxmax()  # the first of equal scores, as the training loop's patience keeps it
    return float(epochs.loc[at, metric]), int(epochs.loc[at, "epoch"])


# A trial's folder, as Tune names it: `trial_<search>_<id>_<n>_<params>_<date>`, `<n>` the order Tune created it in
TRIAL_FOLDER = re.compile(r"_([0-9a-f]{8})_(\d+)_")


def _trial_id_and_number(result) -> tuple[str, int]:
    """A Tune result's trial id (in its metrics, or for a trial that never reported in its folder's name) and the
    order in which Tune created the trial: the same in every run of a seeded search and after a restore, unlike the
    random ids (a folder Tune named otherwise sorts last)."""
    found = TRIAL_FOLDER.search(result.path.rsplit("/", 1)[-1])
    return (result.metrics or {}).get("trial_id") or found.group(1), int(found.group(2)) if found else sys.maxsize


def _trial_rows(results, cfg: StudyConfig, store: Store, key: SearchKey) -> pd.DataFrame:
    """One row per trial. Scores come from the epochs the trial's run logged in the store, the record that
    survives a kill, not from Tune's, which a restarted trial may have missed an epoch of."""
    from pipelines.training.ray_train import read_epochs

    metric, mode = cfg.search.metric, cfg.metric_mode
    attempts = _attempts(store, key)
    rows = []
    for r in results:
        trial_id, number = _trial_id_and_number(r)
        df = pd.DataFrame(read_epochs(store.uri, key.of(TRAIN_DIR, trial_id)))
        score, epoch = best_epoch(df, metric, mode)
        fails = attempts.get(trial_id, [])
        rows.append({
            "trial_id": trial_id, "trial_number": number, "status": "failed" if r.error else "ok",
            **params_of(r.config or {}),
            "epochs_run": int(df["epoch"].max() + 1) if "epoch" in df.columns and len(df) else 0,
            f"best_{metric}": score, "best_epoch": epoch, "failed_attempts": len(fails),
            # an attempt the trial could not record itself (its process died) is classed from Ray's own error
            "error_kind": (fails[-1]["kind"] if fails else error_kind(r.error)) if r.error else "",
            "error": (fails[-1]["error"] if fails else str(r.error))[:500] if r.error else "",
        })
    return pd.DataFrame(rows)


def _remote(fn, cfg: StudyConfig):
    """`fn` as a Ray task with one trial worker's resources (TensorFlow runs there)."""
    import ray

    r = cfg.resources
    # a task given a GPU ends its worker when it returns, so TensorFlow's hold on the card's memory ends with it
    # (Ray's default for GPU tasks, said here because a CPU task's worker is kept for the next search's scoring)
    return ray.remote(num_cpus=max(r.cpus_per_worker, 0.5), num_gpus=r.gpus_per_worker, max_retries=retries.SCORING_TASK,
                      max_calls=1 if r.gpus_per_worker else 0)(fn)


def choose(cfg: StudyConfig, store: Store, key: SearchKey, ctx: TrialContext, best: pd.Series) -> dict[str, Any]:
    """Keep the chosen trial's weights at its best epoch (and refit, if asked); score the test split with the
    model the report names. Returns what `best/trial.json` records."""
    import ray

    trial_id = str(best["trial_id"])
    states = kept_states(store, key.of(TRAIN_DIR, trial_id))
    folder, epoch = checkpoint.best_of(states)
    if epoch != int(best["best_epoch"]):
        raise RuntimeError(f"trial {trial_id} of {key} ranked on epoch {int(best['best_epoch'])} but kept epoch {epoch}")
    store.write_bytes(store.read_bytes(key.path, TRAIN_DIR, trial_id, folder, checkpoint.WEIGHTS_FILE),
                      key.path, BEST_DIR, CHOSEN_WEIGHTS)
    params = params_of(best.to_dict())
    train = ctx.train_config(params).model_dump()
    choice: dict[str, Any] = {"trial_id": trial_id, "epoch": epoch, "params": params, "train": train,
                              cfg.search.metric: float(best[f"best_{cfg.search.metric}"]), "checkpoint": folder,
                              "chosen_weights": CHOSEN_WEIGHTS}
    if cfg.refit:
        weights = ray.get(_remote(refit, cfg).remote(ctx.to_dict(), train, epoch + 1))
        choice.update({"scored": "refit", "refit_epochs": epoch + 1, "scored_weights": weights.rsplit("/", 1)[1]})
    else:
        choice.update({"scored": "chosen_epoch", "scored_weights": CHOSEN_WEIGHTS})
    # the validation split by the validation-ranked weights: the refit model has trained on those images
    preds = ray.get(_remote(score_splits, cfg).remote(ctx.to_dict(), train, {
        "test": key.of(BEST_DIR, choice["scored_weights"]), "val": key.of(BEST_DIR, CHOSEN_WEIGHTS)}))
    store.write_bytes(preds["val"], key.path, VAL_PREDICTIONS)
    store.write_bytes(preds["test"], key.path, PREDICTIONS)
    store.write_bytes(json.dumps(choice, default=float).encode(), key.path, BEST_DIR, CHOICE)
    return choice


def best_trial(trials: pd.DataFrame, metric_col: str, mode: str) -> pd.Series:
    """The row of the best-scoring trial. Ties go to the trial Tune created first, not to Tune's order of results,
    which a restored search may change (a search resumed after its other trials' checkpoints were dropped must
    choose the trial that kept them), nor to the trial ids, which are random: a seeded search that ties chooses the
    same trial in every run."""
    return trials.sort_values([metric_col, "trial_number", "trial_id"], ascending=[mode == "min", True, True],
                              kind="stable").iloc[0]


def run_search(cfg_data: dict[str, Any], results: str, key_data: dict[str, Any]) -> dict[str, Any]:
    """Run (or continue) one search to its end; return what `done.json` says. Runs as a Ray task.

    The whole search runs with this process's AWS keys moved out of its environment (Tune would copy them into
    every trial's runtime env, which Ray logs): every S3 client it makes finds them in the private file, which
    the AWS SDK reads when a client first asks for credentials and keeps for minutes, so no client may be made
    before the move."""
    from pipelines.storage import credentials

    with credentials.out_of_environment():
        return _run_search(cfg_data, results, key_data)


def _run_search(cfg_data: dict[str, Any], results: str, key_data: dict[str, Any]) -> dict[str, Any]:
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
    with tune_snapshot.restore_or_stop():
        grid = tuner.fit()
    tuning_seconds = time.time() - started  # the trials alone; choosing and scoring the test split come after
    optuna_store.sync(store, key)
    trials = _trial_rows(list(grid), cfg, store, key)
    metric_col = f"best_{cfg.search.metric}"
    ok = trials[(trials["status"] == "ok") & trials[metric_col].notna()] if len(trials) else trials
    done: dict[str, Any] = {
        "model": key.model, "scenario": key.scenario, "fold": key.fold, "metric": cfg.search.metric,
        "trials": int(len(trials)), "failed_trials": int((trials["status"] == "failed").sum()) if len(trials) else 0,
        "restored": restored, "seconds": None, "tuning_seconds": tuning_seconds,
    }
    if len(ok):
        best = best_trial(ok, metric_col, cfg.metric_mode)
        choice = choose(cfg, store, key, ctx, best)
        for other in trials["trial_id"]:  # the rest keep metrics only
            if str(other) != choice["trial_id"]:
                for d in checkpoint_dirs(store, key.of(TRAIN_DIR, str(other))):  # whole or cut short
                    store.delete_dir(key.path, TRAIN_DIR, str(other), d)
        done.update({"status": "ok", "best_trial": choice["trial_id"], "best_epoch": choice["epoch"],
                     "best_score": float(best[metric_col]), "params": choice["params"], "scored": choice["scored"]})
    elif len(trials) and (trials["error_kind"] == "storage").all():
        # nothing wrong with the trials: the store or the shards could not be reached; the search stays unsealed
        # and --resume runs its errored trials again
        raise PainsearchError(f"every trial of {key} failed because storage could not be reached "
                              f"({trials['error'].iloc[0][:200]}); rerun with --resume once it is back.")
    else:
        done.update({"status": "failed", "best_trial": None, "best_score": None,
                     "error": "; ".join(sorted(set(trials["error"]))) if len(trials) else "no trial ran"})
    store.write_bytes(trials.to_csv(index=False).encode(), key.path, TRIALS)
    done["seconds"] = time.time() - started
    store.write_bytes(json.dumps(done, default=float).encode(), key.path, DONE)
    return done


def read_trials(store: Store, key: SearchKey) -> pd.DataFrame:
    return read_csv(store.read_bytes(key.path, TRIALS))

