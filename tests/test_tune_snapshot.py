"""A resumed search's Tune snapshot is made consistent first: files of two snapshots (an upload cut short by a
kill or an outage) would make Tune count trials it does not have."""

from __future__ import annotations

import json

import optuna
import pytest
import ray.cloudpickle as cloudpickle
from ray import tune
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from pipelines.storage import open_store
from search.tune_snapshot import reconcile

SESSION = "2026-11-27_10-00-00"


def _snapshot(folder, created: list[str], listed: list[str]) -> None:
    """Tune's own generator state after creating `created` (both running), beside an experiment state that lists
    only `listed`: what a cut upload leaves when the experiment state is the older file."""
    searcher = OptunaSearch(sampler=optuna.samplers.RandomSampler(seed=0))
    searcher.set_search_properties("val_f1_macro", "max", {"lr": tune.uniform(0.0, 1.0)})
    generator = SearchGenerator(ConcurrencyLimiter(searcher, max_concurrent=2))
    for trial_id in created:
        assert generator.searcher.suggest(trial_id) is not None
    generator._counter = len(created)
    generator._total_samples = 2
    folder.mkdir(parents=True)
    generator.save_to_dir(str(folder), session_str=SESSION)
    trial_data = [[json.dumps({"trial_id": t, "status": "RUNNING"}), "{}"] for t in listed]
    (folder / f"experiment_state-{SESSION}.json").write_text(json.dumps({"trial_data": trial_data}))


def _generator_state(folder) -> dict:
    return cloudpickle.loads((folder / f"search_gen_state-{SESSION}.json").read_bytes())


def test_a_generator_ahead_of_the_experiment_state_is_brought_back_to_its_trials(tmp_path):
    _snapshot(tmp_path / "tune", created=["a", "b"], listed=["a"])
    assert _generator_state(tmp_path / "tune")["counter"] == 2  # Tune would end the search after trial a
    assert reconcile(open_store(str(tmp_path)), "tune")
    state = _generator_state(tmp_path / "tune")
    assert state["counter"] == 1 and not state["finished"]
    assert state["name:ConcurrencyLimiter"]["live_trials"] == {"a"}  # nor wait for b, which Tune does not have
    assert state["name:ConcurrencyLimiter"]["num_unfinished_live_trials"] == 1


def test_a_consistent_snapshot_is_left_as_it_is(tmp_path):
    _snapshot(tmp_path / "tune", created=["a", "b"], listed=["a", "b"])
    before = (tmp_path / "tune" / f"search_gen_state-{SESSION}.json").read_bytes()
    assert not reconcile(open_store(str(tmp_path)), "tune")
    assert (tmp_path / "tune" / f"search_gen_state-{SESSION}.json").read_bytes() == before
    assert not reconcile(open_store(str(tmp_path)), "nothing-here")  # a search Tune never snapshotted


def test_a_restore_tune_cannot_read_stops_the_search_unsealed(tiny_shards, ray_local, tmp_path):
    """Tune, when its restore fails (here its experiment state cannot be parsed; in benchmarks/reliability.py the
    store could not be reached), starts the search afresh and seals it with the wrong trials. It stops instead,
    unsealed, and a later resume that can read the state finishes it."""
    from pipelines.errors import PainsearchError
    from search import tuner
    from search.config import load_study_config
    from search.layout import DONE, TUNE_DIR
    from search.study import searches, start_study, write_folds

    from conftest import SMOKE

    uri = str(tmp_path / "results")
    cfg = load_study_config(SMOKE, {
        "shards": str(tiny_shards), "storage": uri, "models": ["weinet"], "scenarios": ["subject_kfold"],
        "resources": {"runner": "inline"}, "search": {"trials": 2, "scheduler": "none", "space": {"epochs": [1, 1]}}})
    store = open_store(uri)
    start_study(cfg, store, False, print)
    write_folds(cfg, store)
    key = searches(cfg)[0]
    args = (cfg.model_dump(mode="json"), uri, {"model": key.model, "scenario": key.scenario, "fold": key.fold})
    first = tuner.run_search(*args)
    assert first["status"] == "ok" and first["trials"] == 2
    store.delete(key.path, DONE)  # as if the driver was killed after Tune's last snapshot
    tune_dir = (key.path, TUNE_DIR, key.slug)
    (state,) = [n for n in store.list(*tune_dir) if n.startswith("experiment_state-")]
    kept = store.read_bytes(*tune_dir, state)
    store.write_bytes(b"{", *tune_dir, state)  # what Tune cannot read
    with pytest.raises(PainsearchError, match="could not read the search's saved state"):
        tuner.run_search(*args)
    assert not store.exists(key.path, DONE)  # unsealed
    store.write_bytes(kept, *tune_dir, state)  # the store answers again
    again = tuner.run_search(*args)
    assert again["status"] == "ok" and again["trials"] == 2 and again["restored"] is True
    assert again["best_trial"] == first["best_trial"]  # the same trials, not a search started afresh


def test_tied_trials_go_to_the_one_tune_created_first():
    """A seeded search whose trials tie (a network that learns nothing scores the same every time) chooses the same
    trial in every run: the first Tune created, whatever its random id; otherwise the best score."""
    import pandas as pd

    from search.tuner import best_trial

    trials = pd.DataFrame({"trial_id": ["0a0a0a0a", "ffff0000", "00ff00ff"], "trial_number": [3, 1, 2],
                           "best_val_f1_macro": [0.333, 0.333, 0.333], "best_val_loss": [0.7, 0.7, 0.6]})
    assert best_trial(trials, "best_val_f1_macro", "max")["trial_id"] == "ffff0000"
    assert best_trial(trials, "best_val_loss", "min")["trial_id"] == "00ff00ff"
