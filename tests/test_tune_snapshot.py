"""A resumed search's Tune snapshot is made consistent first: files of two snapshots (an upload cut short by a
kill or an outage) would make Tune count trials it does not have."""

from __future__ import annotations

import json

import optuna
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
