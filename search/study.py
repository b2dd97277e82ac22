"""The whole study: every (model, scenario, fold) search, run concurrently, resumable after any kill.

The results store it writes is laid out in `search.layout`, the contract that `analysis/` reads.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from pipelines import retries
from pipelines.errors import PainsearchError
from pipelines.progress import Progress, say, time_left
from pipelines.storage import Store, open_store
from search.config import StudyConfig
from search.folds import make_folds
from search.layout import (DONE, FORMAT, FORMAT_VERSION, STUDY, SUMMARY, TIMING_DIR, SearchKey, folds_file,
                           read_parquet, search_keys, trials_of)
from search.lease import HEARTBEAT_S, Lease
from search.tuner import run_search


def protocol(cfg: StudyConfig) -> str:
    """The protocol in words, as the report prints it: what every model trains on and what is scored."""
    scored = ("the chosen settings retrained on training + validation for as many epochs as the chosen trial took "
              "to reach its best validation epoch (`refit`)" if cfg.refit else
              "the chosen trial's weights at its best validation epoch")
    return ("Nested: in every outer fold a validation split carved from the training split (by subject where the "
            "scenario is by subject) is all that Optuna, ASHA and early stopping see; trials train on the rest of the "
            f"training split. The test split is scored once, after the search ends, with {scored}.")
# settings that may change between a run and its resumption (they do not change any result)
RESUMABLE_CHANGES = {"storage", "search.verbose", "search.concurrent_searches", "search.max_concurrent_trials"}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("painsearch", "ray", "tensorflow", "tf-keras", "optuna", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def searches(cfg: StudyConfig) -> list[SearchKey]:
    """Every search of the study, in the order they start: fold-major, so early results span all models."""
    return search_keys(cfg.models, cfg.scenarios, cfg.folds)


def _as_read_now(old: dict[str, Any]) -> dict[str, Any]:
    """A stored config as this version reads it: a setting added since it was written takes its default
    (defaults keep earlier behaviour), so resuming an older study is not refused over a setting it never had."""
    from pydantic import ValidationError

    try:
        return StudyConfig.model_validate(old).model_dump(mode="json")
    except ValidationError:  # compared as stored: whatever differs is named
        return old


def start_study(cfg: StudyConfig, store: Store, resume: bool, log: Callable[[str], None]) -> None:
    """Write study.json for a new study; for a resumed one, refuse settings that would change its results."""
    resolved = cfg.model_dump(mode="json")
    if store.exists(STUDY):
        if not resume:
            raise PainsearchError(
                f"{store.uri} already holds a study; pass --resume to continue it, or choose another --storage."
            )
        old = _as_read_now(json.loads(store.read_bytes(STUDY))["config"])
        a, b = _flat(old), _flat(resolved)
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES)
        if changed:
            raise PainsearchError(
                f"The study at {store.uri} was started with other settings ({', '.join(changed)} differ); resume it "
                f"with the config it was started with, or choose another --storage for the new one."
            )
        log(f"resuming the study at {store.uri}")
        return
    if resume:
        log(f"nothing to resume at {store.uri}: starting a new study there")
    store.write_bytes(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "config": resolved,
                                  "protocol": protocol(cfg), "versions": _versions(), "started": time.time()},
                                 indent=2).encode(), STUDY)


def write_folds(cfg: StudyConfig, store: Store) -> dict[str, pd.DataFrame]:
    """The fold tables, made once and then read back, so a resumed study uses exactly the same folds."""
    from pipelines.shards.read import read_meta

    out: dict[str, pd.DataFrame] = {}
    meta = None
    for scenario in cfg.scenarios:
        name = folds_file(scenario)
        if store.exists(name):
            out[scenario] = read_parquet(store.read_bytes(name))
            continue
        if meta is None:
            meta = read_meta(cfg.shards, cfg.s3_endpoint)
        folds = make_folds(meta, scenario, cfg.folds, cfg.seed, cfg.pool, cfg.external, cfg.val_fraction)
        folds = folds.merge(meta[["image_id", "dataset", "subject", "label"]], on="image_id", how="left")
        if folds["fold"].max() + 1 < cfg.folds:
            raise PainsearchError(
                f"The {scenario} scenario asks for {cfg.folds} folds but the data allow {folds['fold'].max() + 1}; "
                f"lower `study.folds` or prepare more subjects."
            )
        buf = io.BytesIO()
        folds.to_parquet(buf, index=False)
        store.write_bytes(buf.getvalue(), name)
        out[scenario] = folds
    return out


def read_done(store: Store, key: SearchKey) -> dict[str, Any] | None:
    return json.loads(store.read_bytes(key.path, DONE)) if store.exists(key.path, DONE) else None


def _line(i: int, n: int, done: dict[str, Any]) -> str:
    head = f"[{i}/{n}] {done['model']} {done['scenario']} fold {done['fold']}:"
    tail = f"{done['trials']} trials ({done['failed_trials']} failed), {done['seconds']:.0f} s"
    if done["status"] == "ok":
        return f"{head} best {done['metric']} {done['best_score']:.3f} after {tail}"
    return f"{head} FAILED after {tail}: {done.get('error', '')[:300]}"


def write_summary(cfg: StudyConfig, store: Store) -> pd.DataFrame:
    rows = [d for k in searches(cfg) if (d := read_done(store, k))]
    df = pd.DataFrame([{k: v for k, v in d.items() if k != "params"} | {f"param_{p}": v for p, v in (d.get("params") or {}).items()}
                       for d in rows])
    store.write_bytes(df.to_csv(index=False).encode(), SUMMARY)
    return df


def check_inputs(cfg: StudyConfig, storage: str | None = None) -> None:
    """Fail early, in one sentence, on missing or damaged shards or an unwritable store (before the study writes
    anything, so that fixing the shards and running again needs no --resume)."""
    from pipelines.shards.read import check_shards

    check_shards(cfg.shards, cfg.s3_endpoint)
    open_store(storage or cfg.storage, cfg.s3_endpoint).check_writable()


def run_study(cfg: StudyConfig, storage: str | None = None, resume: bool = False,
              log: Callable[[str], None] = say) -> pd.DataFrame:
    """Run every search not yet done, `concurrent_searches` at a time; return the summary (one row per search).
    The driver holds the study's lease while it runs (`search.lease`): a second driver is refused."""
    cfg = cfg.model_copy(update={"storage": storage or cfg.storage})
    check_inputs(cfg)
    store = open_store(cfg.storage, cfg.s3_endpoint)
    with Lease(store) as lease:
        return _run(cfg, store, resume, log, lease)


def trials_ended(store: Store, key: SearchKey) -> int:
    """How many of a search's trials have ended (trained, or stopped by Tune)."""
    return len(trials_of(store.list(key.path, TIMING_DIR)))


def last_line(message: str) -> str:
    """What went wrong, from an error whose message carries a traceback (Tune's do): its last line."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines and lines[0].startswith("Traceback") else message.strip()


def _run(cfg: StudyConfig, store: Store, resume: bool, log: Callable[[str], None], lease: Lease) -> pd.DataFrame:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    start_study(cfg, store, resume, log)
    write_folds(cfg, store)
    todo = [k for k in searches(cfg) if not store.exists(k.path, DONE)]
    total = len(searches(cfg))
    finished = total - len(todo)
    if finished:
        log(f"{finished} of {total} searches already done; {len(todo)} to run")
    # a search runs beside the driver: the driver's node is the one whose loss ends the study anyway, so no other
    # node's loss (a spot instance taken back) takes a search with it. Soft: a retried search may run elsewhere
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    task = ray.remote(num_cpus=0, max_retries=retries.SEARCH_TASK, scheduling_strategy=here)(run_search)
    cfg_data = cfg.model_dump(mode="json")
    pending: dict[Any, SearchKey] = {}
    failures = 0
    started, first = time.time(), finished
    # trials that ended (each leaves its timing record), counted again for the running searches at every wait; a
    # resumed study counts what ran before it once, so the time left is judged on this run's trials only
    ended = {k: trials_ended(store, k) for k in searches(cfg)} if resume else {}
    trials = Progress("search: trials", total * cfg.search.trials, "trials", log, first=sum(ended.values()),
                      started=started)
    while todo or pending:
        while todo and len(pending) < cfg.search.concurrent_searches:
            key = todo.pop(0)
            pending[task.remote(cfg_data, store.uri, key.as_dict())] = key
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=HEARTBEAT_S)
        lease.check()
        ended.update({k: trials_ended(store, k) for k in pending.values()})
        trials.update(sum(ended.values()))
        if not ready:
            continue
        key = pending.pop(ready[0])
        finished += 1
        try:
            done = ray.get(ready[0])
            log(f"{_line(finished, total, done)} ({time_left(finished, total, time.time() - started, first)})")
        except Exception as exc:  # the search raised, or its task was lost more often than Ray retries it
            failures += 1
            cause = getattr(exc, "cause", None) or exc
            log(f"[{finished}/{total}] {key}: the search stopped with {type(cause).__name__}: "
                f"{last_line(str(cause))[:500]}; rerun with --resume to continue it")
    trials.close()  # short of its total when searches failed or a time budget ended trials early
    summary = write_summary(cfg, store)
    if failures:
        raise PainsearchError(f"{failures} search(es) stopped before their end; rerun with --resume to continue them.")
    return summary
