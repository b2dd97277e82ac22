"""The searcher a resumed search gets back from Tune's state may be older than Optuna's journal."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from search.optuna_searcher import ResumableOptunaSearch


@pytest.mark.parametrize("searcher", [OptunaSearch, ResumableOptunaSearch])
def test_a_resumed_searcher_takes_results_of_a_trial_its_journal_closed(tmp_path, searcher):
    """Tune saved its searcher while trial t0 ran; t0 ended (the journal records it at once) and the driver was
    killed before Tune saved again. Resumed, Tune runs t0 again from its checkpoint and reports its epochs."""
    def make():
        return searcher(space={"lr": optuna.distributions.FloatDistribution(0.0, 1.0)}, metric="val_f1_macro",
                        mode="max", sampler=optuna.samplers.RandomSampler(seed=0), study_name="s",
                        storage=JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal"))))

    before = make()
    assert before.suggest("t0") is not None
    (tmp_path / "tune").mkdir()
    before.save_to_dir(str(tmp_path / "tune"), session_str="s")  # Tune's last snapshot: t0 running
    before.on_trial_result("t0", {"val_f1_macro": 0.4, "training_iteration": 1})
    before.on_trial_complete("t0", {"val_f1_macro": 0.5, "training_iteration": 2})  # in the journal, not the snapshot

    resumed = make()
    resumed.restore_from_dir(str(tmp_path / "tune"))
    report = lambda: resumed.on_trial_result("t0", {"val_f1_macro": 0.45, "training_iteration": 1})  # noqa: E731
    if searcher is OptunaSearch:  # what stopped the search at every resume
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            report()
        return
    report()
    resumed.on_trial_complete("t0", {"val_f1_macro": 0.45, "training_iteration": 2})
    (trial,) = optuna.load_study(study_name="s", storage=JournalStorage(
        JournalFileBackend(str(tmp_path / "optuna.journal")))).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.5  # the journal's record stands


@pytest.mark.parametrize("searcher", [OptunaSearch, ResumableOptunaSearch])
def test_a_searcher_rebuilt_without_tunes_snapshot_finds_its_trials_in_the_journal(tmp_path, searcher):
    """The kill cut Tune's snapshot upload short: Tune's state has t0 and t1 running, its searcher is gone. Resumed
    with the search space (`search.tuner`), the searcher finds each trial in the journal by its parameters."""
    def make():
        s = searcher(sampler=optuna.samplers.RandomSampler(seed=0), study_name="s",
                     storage=JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal"))))
        s.set_search_properties("val_f1_macro", "max", {"lr": tune.uniform(0.0, 1.0)})  # as Tune does on restore
        return s

    before = make()
    configs = {t: before.suggest(t) for t in ("t0", "t1")}
    assert configs["t0"] != configs["t1"]

    resumed = make()
    (tmp_path / "tune").mkdir()  # Tune's snapshot, which holds no searcher
    if searcher is OptunaSearch:  # Tune then starts the search afresh beside the trials it restored, and waits
        with pytest.raises(RuntimeError, match="unable to find checkpoint"):
            resumed.restore_from_dir(str(tmp_path / "tune"))
        with pytest.raises(KeyError):  # nor could it take the restored trials' results
            resumed.on_trial_result("t1", {"val_f1_macro": 0.3, "training_iteration": 1, "config/lr": configs["t1"]["lr"]})
        return
    resumed.restore_from_dir(str(tmp_path / "tune"))

    def report(t, score, epoch):
        resumed.on_trial_result(t, {"val_f1_macro": score, "training_iteration": epoch,
                                   "config/lr": configs[t]["lr"]})  # flattened, as Tune passes them

    report("t1", 0.3, 1)
    report("t0", 0.4, 1)
    resumed.on_trial_complete("t1", {"val_f1_macro": 0.35, "training_iteration": 2, "config/lr": configs["t1"]["lr"]})
    resumed.on_trial_complete("t0", {"val_f1_macro": 0.45, "training_iteration": 2, "config/lr": configs["t0"]["lr"]})
    trials = optuna.load_study(study_name="s", storage=JournalStorage(
        JournalFileBackend(str(tmp_path / "optuna.journal")))).trials
    assert [(t.params["lr"], t.state, t.value, t.intermediate_values) for t in trials] == [
        (configs["t0"]["lr"], optuna.trial.TrialState.COMPLETE, 0.45, {1: 0.4}),
        (configs["t1"]["lr"], optuna.trial.TrialState.COMPLETE, 0.35, {1: 0.3})]


def test_every_searchs_journal_gathers_into_one_file_the_dashboard_opens(tmp_path, capsys):
    """`painsearch search journals` copies each search's Optuna study from the store into one new journal, under the
    search's own name; a search that has no journal yet is left out, and an existing file is never overwritten."""
    import json

    from cluster.cli.main import main
    from search.layout import OPTUNA_JOURNAL, STUDY, SearchKey

    results = tmp_path / "results"
    results.mkdir()
    (results / STUDY).write_text(json.dumps({"config": {"models": ["weinet", "vgg16"], "scenarios": ["external"],
                                                        "folds": 2}}))
    ran = [SearchKey("weinet", "external", 0), SearchKey("vgg16", "external", 1)]
    for n, key in enumerate(ran, start=2):
        (results / key.path).mkdir(parents=True)
        journal = JournalStorage(JournalFileBackend(str(results / key.path / OPTUNA_JOURNAL)))
        study = optuna.create_study(study_name=key.slug, storage=journal, direction="maximize")
        study.optimize(lambda t: t.suggest_float("learning_rate", 1e-5, 1e-2, log=True), n_trials=n)
    out = tmp_path / "all.journal"
    assert main(["search", "journals", str(results), "--out", str(out)]) == 0
    assert f"optuna-dashboard {out}" in capsys.readouterr().out
    merged = JournalStorage(JournalFileBackend(str(out)))
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(merged)) == sorted(k.slug for k in ran)
    assert [len(optuna.load_study(study_name=k.slug, storage=merged).trials) for k in ran] == [2, 3]
    assert main(["search", "journals", str(results), "--out", str(out)]) == 2  # never over an existing file
