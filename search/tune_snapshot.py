"""Tune's snapshot of a search, made consistent before the search is resumed.

Tune writes its snapshot into a local folder, then uploads the folder's files one by one:
`experiment_state-<session>.json` (the trials), `search_gen_state-<session>.json` (how many trials the search
has created, and which of them its concurrency limit counts as running) and the searcher's own state. A kill
or a storage outage between two uploads leaves files of two snapshots in the store. Resumed from them, Tune
counts trials it does not have: the search ends with fewer trials than asked (benchmarks/reliability.py met
it), or waits for good for a running trial it does not have. The experiment state is the one file that lists
the trials, so the count and the running set are taken from it. (The searcher's own state is rebuilt when it is
missing: `search.optuna_searcher`.)
"""

from __future__ import annotations

import json

from pipelines.storage import Store

EXPERIMENT_STATE = "experiment_state-"
GENERATOR_STATE = "search_gen_state-"
LIMITER = "name:ConcurrencyLimiter"


def _newest(names: list[str], prefix: str) -> str | None:
    """Tune's own choice among its snapshot files: the greatest name (names carry the session's start time)."""
    found = [n for n in names if n.startswith(prefix)]
    return max(found) if found else None


def reconcile(store: Store, *tune_dir: str) -> bool:
    """Make the generator's state agree with the trials of the experiment state; whether it had to."""
    import ray.cloudpickle as cloudpickle

    names = store.list(*tune_dir)
    experiment, generator = _newest(names, EXPERIMENT_STATE), _newest(names, GENERATOR_STATE)
    if experiment is None or generator is None:
        return False
    trial_data = json.loads(store.read_bytes(*tune_dir, experiment))["trial_data"]
    trials = {json.loads(trial_json)["trial_id"] for trial_json, _ in trial_data}
    state = cloudpickle.loads(store.read_bytes(*tune_dir, generator))
    limiter = state.get(LIMITER)
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
