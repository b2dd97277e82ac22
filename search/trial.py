"""One trial: a run of one network on one fold's train split, scored on its validation split every epoch.

`trial_fn` is the Tune function trainable; a runner (`search.runners`) trains. Every epoch's metrics reach
Tune as they come, so Optuna and ASHA see them. A trial never sees the test split: `search.scoring` scores
that after the search.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.config import TrainConfig
from pipelines.errors import StoreUnreachable
from pipelines.ray_compat import session_stopped, train_session
from pipelines.storage import Store, open_store
from search.folds import fold_table
from search.layout import ATTEMPTS_DIR, TIMING_DIR, SearchKey, numbered, of_trial
from search.space import params_of


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one search shares (small: it is stored with Tune's experiment state)."""

    results: str
    endpoint: str | None
    shards: str
    key: SearchKey
    metric: str  # what the search optimises: val_f1_macro, val_accuracy or val_loss
    train: dict[str, Any]  # the study's TrainSettings, with the network's size filled in
    seed: int
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    runner: str  # search.runners: inline or ray_train
    placement: str  # a Ray Train run's placement strategy

    def store(self) -> Store:
        return open_store(self.results, self.endpoint)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrialContext:
        return TrialContext(**{**d, "key": SearchKey(**d["key"])})

    def train_config(self, params: dict[str, Any]) -> TrainConfig:
        """The run's settings: the study's shared ones plus the searched `params`."""
        return TrainConfig.model_validate({
            **self.train, **params_of(params), "model": self.key.model, "monitor": self.metric.removeprefix("val_"),
            "seed": self.seed + self.key.fold,
        })


def root_error(text: str, fallback: str) -> str:
    """The innermost `SomeError: message` line of a traceback (Ray wraps a worker's error several times)."""
    for line in reversed(text.splitlines()):
        m = re.match(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Exhausted\w*)): (.+)$", line)
        if m and m.group(1) not in ("TrainingFailedError", "RayTaskError", "WorkerGroupError", "RayActorError"):
            return f"{m.group(1)}: {m.group(2)}"
    return fallback


# The kinds of a failed attempt: `out_of_memory` (the memory monitor, the kernel or TensorFlow's allocator stopped
# it), `storage` (the results store or the shards could not be reached: nothing wrong with the trial, and its
# search is not sealed as failed), `error` (anything else).
OOM_TYPES = ("OutOfMemoryError", "ResourceExhaustedError", "MemoryError")
STORAGE_WORDS = ("could not be reached",)


def _chain(exc: BaseException):
    """The exception and its causes (`raise ... from`, Ray's `cause`, Tune's wrapped errors), and the errors of the
    Ray Train workers it reports (`worker_failures`)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.append(e.__cause__ or getattr(e, "cause", None) or e.__context__)
        todo.extend((getattr(e, "worker_failures", None) or {}).values())


def error_kind(exc: BaseException | str) -> str:
    """The kind of a failed attempt from the exception's own types and Ray's exit causes: a worker that Ray's
    memory monitor kills raises `ray.exceptions.OutOfMemoryError`; one the kernel kills dies with Ray's exit type
    SYSTEM_ERROR. A traceback's text stands in where only that survived (a wrapped remote error)."""
    from ray.exceptions import RayActorError, WorkerCrashedError

    if isinstance(exc, str):
        text = exc
        kinds = [name for name in OOM_TYPES if name in text]
        if kinds or "OOM when allocating" in text:
            return "out_of_memory"
        return "storage" if any(w in text for w in STORAGE_WORDS) else "error"
    for e in _chain(exc):
        if type(e).__name__ in OOM_TYPES:
            return "out_of_memory"
        if isinstance(e, (RayActorError, WorkerCrashedError)) and "exit type: SYSTEM_ERROR" in str(e):
            # the worker died unexpectedly (the kernel killed it): Ray's exit detail names the OOM killer as the
            # first common cause, and cannot tell it from a crash, which the recorded error text then shows
            return "out_of_memory"
        if isinstance(e, StoreUnreachable):
            return "storage"
    kind = error_kind(error_text(exc))
    return "error" if kind == "storage" else kind  # an outage is known by its type; words alone do not make one


def error_text(exc: BaseException) -> str:
    """An error's traceback, followed by those of the Ray Train workers it reports (`worker_failures`): Ray Train's
    own message keeps only a snippet of each, cut before the worker's error line."""
    text = "".join(traceback.format_exception(exc))
    for e in _chain(exc):
        for failure in (getattr(e, "worker_failures", None) or {}).values():
            text += "".join(traceback.format_exception(failure))
    return text


def record_attempt(store: Store, key: SearchKey, trial_id: str, exc: BaseException) -> None:
    """A failed attempt, written down before the trial's error goes on to Tune (which retries or records it).
    If the store cannot take the record (it is down), the trial's own error still goes on, unchanged."""
    text = error_text(exc)
    try:
        attempt = len(of_trial(store.list(key.path, ATTEMPTS_DIR), trial_id))
        record = {"trial_id": trial_id, "attempt": attempt, "kind": error_kind(exc),
                  "error": root_error(text, f"{type(exc).__name__}: {exc}")[:2000], "traceback": text[-8000:]}
        store.write_bytes(json.dumps(record).encode(), key.path, ATTEMPTS_DIR, numbered(trial_id, attempt))
    except Exception:  # noqa: BLE001  the store's failure must not hide the trial's
        pass


def resident_mb() -> float:
    """This process's resident memory in MiB (Linux's /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _write_timing(store: Store, key: SearchKey, timing: dict[str, Any]) -> None:
    runs = len(of_trial(store.list(key.path, TIMING_DIR), timing["trial_id"]))
    store.write_bytes(json.dumps(timing).encode(), key.path, TIMING_DIR, numbered(timing["trial_id"], runs))


def record_timing(store: Store, key: SearchKey, trial_id: str, started: float, fit_started: float,
                  actor_start_s: float, ended: str = "trained") -> None:
    """How the trial's time went, once per run of the trial function that returned (`ended`: `trained`, or
    `resumed_done`, restarted after a kill with nothing left to train). A run that Tune ends is recorded by
    Tune's side (`timing_callback`)."""
    timing = {"trial_id": trial_id, "ended": ended, "ended_at": time.time(),
              "wall_s": time.time() - started, "setup_s": fit_started - started, "fit_s": time.time() - fit_started,
              # a Ray Train trial's process only drives the run: importing TensorFlow there costs every trial seconds;
              # an inline trial trains here, and its reused actor has TensorFlow loaded from an earlier trial
              "driver_imported_tensorflow": "tensorflow" in sys.modules,
              # an inline trial's fresh actor loads TensorFlow first (0 on a reused actor, and under Ray Train)
              "actor_start_s": actor_start_s,
              # the process and its resident memory at the trial's end: a reused actor's memory must not grow
              "pid": os.getpid(), "rss_mb": resident_mb()}
    _write_timing(store, key, timing)


def timing_callback(store: Store, key: SearchKey):
    """A Tune callback that records each run of a trial that Tune ends without the trial recording it: a run ASHA
    stops part way, or at its last epoch (ASHA stops a trial that reaches `max_t` at that epoch's report), and the
    runs still going when the search's time budget runs out. The trial's own process cannot: Tune ends its thread
    at the report it stops after, and removes the search's last actor without waiting for it. Such a record is
    written by Tune's side (`recorded_by`): its wall is Tune's time for the run up to its last report (on a fresh
    actor, with the actor's start-up in it), and it has no set-up or `fit` time. A trial that already has a record
    (a run that trained to its end and was restarted after a kill with nothing left to train) gets no other."""
    import logging

    from ray.tune import Callback

    def unrecorded(trial) -> bool:
        return not of_trial(store.list(key.path, TIMING_DIR), trial.trial_id)

    def record(trial) -> None:
        last = trial.last_result or {}
        done, planned = int(last.get("epochs_done", 0)), int((trial.config or {}).get("epochs", 0))
        ended = "trained" if (planned and done >= planned) or last.get("stopped_early") else "stopped"
        try:
            _write_timing(store, key, {"trial_id": trial.trial_id, "ended": ended, "ended_at": time.time(),
                                       "wall_s": float(last.get("time_total_s", 0.0)), "epochs_done": done,
                                       "recorded_by": "tune"})
        except Exception as exc:  # noqa: BLE001  a timing record must not turn how the trial ended into an error
            logging.getLogger(__name__).warning("trial %s: its timing could not be recorded (%s)", trial.trial_id, exc)

    class RecordStops(Callback):
        def __init__(self) -> None:
            self.started: set[str] = set()  # the trials that ran in this run of the search

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.started.add(trial.trial_id)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            # a run whose trial function returned has written its record by now: Tune learns of the end after it
            if unrecorded(trial):
                record(trial)

        def on_experiment_end(self, trials, **info) -> None:
            # the time budget ends the runs still going without `on_trial_complete`
            for trial in trials:
                if trial.trial_id in self.started and trial.status == "TERMINATED" and unrecorded(trial):
                    record(trial)

    return RecordStops()


def trial_fn(config: dict[str, Any], context: dict[str, Any], actor_start_s: float = 0.0) -> None:
    """The Tune function trainable: the trial's runner trains; each failed attempt is written down before it is
    re-raised, and the trial's timing after it ends."""
    from ray import tune

    from search.layout import TRAIN_DIR
    from search.runners import RUN, resume_point

    ctx = TrialContext.from_dict(context)
    trial_id = tune.get_context().get_trial_id()
    session = train_session()  # taken now: Tune drops it when it stops the trial
    store = ctx.store()
    started = fit_started = time.time()
    try:
        cfg, run = ctx.train_config(config), ctx.key.of(TRAIN_DIR, trial_id)
        latest, last = resume_point(store, run, cfg)
        if last is not None:  # restarted after a kill with nothing left to train: Tune still needs a result
            tune.report(last)
            if not of_trial(store.list(ctx.key.path, TIMING_DIR), trial_id):  # the kill came before its timing
                record_timing(store, ctx.key, trial_id, started, started, actor_start_s, "resumed_done")
            return
        fold = fold_table(store, ctx.key)
        fit_started = time.time()
        RUN[ctx.runner](ctx, cfg, run, store, fold, latest)
        record_timing(store, ctx.key, trial_id, started, fit_started, actor_start_s)
    except Exception as exc:
        # Tune stopped this trial (ASHA, or the search ended): under Ray Train it removes the trial's placement
        # group, which takes the run down with it; that is not a failed attempt (Tune's side records the stop)
        if not session_stopped(session):
            record_attempt(store, ctx.key, trial_id, exc)
        raise
