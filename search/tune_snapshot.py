"""Tune's snapshot of a search, made consistent before the search is resumed.

Tune writes its snapshot into a local folder, then uploads the folder's files one by one:
`experiment_state-<session>.json` (the trials), `search_gen_state-<session>.json` (how many trials the search
has created, and which of them its concurrency limit counts as running) and the searcher's own state. A kill
or a storage outage between two uploads leaves files of two snapshots in the store. Resumed from them, Tune
counts trials it does not have: the search ends with fewer trials than asked (benchmarks/reliability.py met
it), or waits for good for a running trial it does not have. The experiment state is the one file that lists
the trials, so the count and the running set are taken from it. (The searcher's own state is rebuilt when it is
missing: `search.optuna_searcher`.)

Tune's own reads of the snapshot can fail as well (the store unreachable for a moment): Tune then logs "Failed
to restore the run state", starts the search afresh beside what it had restored so far, and ends it with the
wrong trials (measured in benchmarks/reliability.py: a search of 2 trials sealed after 1). `restore_or_stop`
turns that record into an error, so the search stops unsealed and the next `--resume` restores it.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.errors import PainsearchError
from pipelines.ray_compat import TUNE_RESTORE_FAILED, tune_snapshot_names
from pipelines.storage import Store


def _newest(names: list[str], prefix: str) -> str | None:
    """Tune's own choice among its snapshot files: the greatest name (names carry the session's start time)."""
    found = [n for n in names if n.startswith(prefix)]
    return max(found) if found else None


def reconcile(store: Store, *tune_dir: str) -> bool:
    """Make the generator's state agree with the trials of the experiment state; whether it had to."""
    import ray.cloudpickle as cloudpickle

    names, tune = store.list(*tune_dir), tune_snapshot_names()
    experiment, generator = _newest(names, tune["experiment_state"]), _newest(names, tune["generator_state"])
    if experiment is None or generator is None:
        return False
    try:
        trial_data = json.loads(store.read_bytes(*tune_dir, experiment))["trial_data"]
        trials = {json.loads(trial_json)["trial_id"] for trial_json, _ in trial_data}
        state = cloudpickle.loads(store.read_bytes(*tune_dir, generator))
    except (ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError):
        return False  # not a snapshot this module can read: Tune's restore decides (`restore_or_stop`)
    limiter = state.get(tune["limiter"])
    live = set(limiter["live_trials"]) if limiter else set()
    if state["counter"] == len(trials) and live <= trials:
        return False
    state["counter"] = len(trials)
    state["finished"] = state["finished"] and len(trials) >= state["total_samples"]
    if limiter:
        limiter["live_trials"] = live & trials
        limiter["num_unfinished_live_trials"] = len(limiter["live_trials"])
    store.write_bytes(cloudpickle.dumps(state), *tune_dir, generator)
    return True


class _StopOnFailedRestore(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(TUNE_RESTORE_FAILED):
            cause = record.exc_info[1] if record.exc_info else None
            raise PainsearchError(f"Tune could not read the search's saved state ({cause}); the search is left "
                                  "as it was: rerun with --resume once the results store can be reached.")


@contextmanager
def restore_or_stop() -> Iterator[None]:
    """Within it, a Tune restore that fails raises instead of starting the search afresh (in this process)."""
    log, handler = logging.getLogger(tune_snapshot_names()["controller_log"]), _StopOnFailedRestore()
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
