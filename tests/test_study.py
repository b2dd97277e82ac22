"""The study end to end: the smoke config through `ray job submit`, a study locally (killed and resumed, on S3), failing trials."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from conftest import s3_vars

from cluster.cli import main
from pipelines.storage import open_store
from search.config import load_study_config
from search.layout import OPTUNA_JOURNAL, TUNE_DIR
from search.runners import RUNNERS, runner_for
from search.study import searches

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"
VENV_BIN = Path(sys.executable).parent


def _store_files(store, *parts):
    out = []
    for f in store.list(*parts):
        out.append("/".join([*parts, f]))
    for d in store.dirs(*parts):
        out.extend(_store_files(store, *parts, d))
    return out


def check_complete(uri: str, cfg, endpoint=None) -> dict:
    """The rules of a finished study, whatever ran it; returns per-search done.json."""
    store = open_store(uri, endpoint)
    study = json.loads(store.read_bytes("study.json"))
    assert study["format"] == "painsearch-results" and "validation split" in study["protocol"]
    dones = {}
    for key in searches(cfg):
        done = json.loads(store.read_bytes(key.path, "done.json"))
        dones[key] = done
        assert done["status"] == "ok", done
        trials = pd.read_csv(io.BytesIO(store.read_bytes(key.path, "trials.csv")), dtype={"trial_id": str})
        assert len(trials) == cfg.search.trials and trials["trial_id"].is_unique
        assert (trials["status"] == "ok").all() and (trials["failed_attempts"] == 0).all(), trials
        folds = pd.read_parquet(io.BytesIO(store.read_bytes("folds", f"{key.scenario}.parquet")))
        test_ids = set(folds.loc[(folds["fold"] == key.fold) & (folds["role"] == "test"), "image_id"])
        preds = pd.read_parquet(io.BytesIO(store.read_bytes(key.path, "predictions.parquet")))
        assert set(preds["image_id"]) == test_ids and preds["image_id"].is_unique
        assert ((preds["prob_0"] + preds["prob_1"] - 1).abs() < 1e-4).all()
        choice = json.loads(store.read_bytes(key.path, "best", "trial.json"))
        assert store.exists(key.path, "best", choice["scored_weights"]) and choice["trial_id"] == done["best_trial"]
        # only the chosen trial keeps checkpoints; every trial keeps its epochs
        kept = [t for t in store.dirs(key.path, "train") if any(d.startswith("checkpoint_") for d in store.dirs(key.path, "train", t))]
        assert kept == [done["best_trial"]]
        for t in trials["trial_id"]:
            assert store.list(key.path, "train", t, "epochs")
            timing = [f for f in store.list(key.path, "timing") if f.startswith(f"{t}-")]
            assert len(timing) == 1, "a trial ran twice"
            # under Ray Train the trial's own process only drives the run: importing TensorFlow there costs seconds
            imported = json.loads(store.read_bytes(key.path, "timing", timing[0]))["driver_imported_tensorflow"]
            assert imported == (runner_for(cfg.resources.runner, cfg.resources.workers_per_trial) == "inline")
    summary = pd.read_csv(io.BytesIO(store.read_bytes("summary.csv")))
    assert len(summary) == len(searches(cfg)) and not summary[["model", "scenario", "fold"]].duplicated().any()
    return dones


def raw_subject_ids(phantom: Path) -> set[str]:
    from conftest import tiny_prepare_config
    from pipelines.shards.prepare import read_sources

    _, listings = read_sources(tiny_prepare_config(phantom, "unused"))
    return {r.subject for listing in listings for r in listing.records}


# ------------------------------------------------------------------ the smoke study, locally


def test_smoke_config_is_what_ci_needs():
    cfg = load_study_config(SMOKE, {"shards": "x"})
    assert len(cfg.models) == 2 and cfg.scenarios == ("image_kfold", "subject_kfold", "external")
    assert cfg.folds == 2 and cfg.search.trials == 2 and cfg.train.size == 32
    from search.space import space_for

    assert all(space_for(m, False, cfg.search.space).epochs == (1, 1) for m in cfg.models)


def test_smoke_study_end_to_end(smoke_study, tiny_phantom):
    cfg = smoke_study["cfg"]
    check_complete(smoke_study["uri"], cfg)
    # the job's log: the trials' progress, a line every 10 s and at the end
    assert re.search(r"search: trials \[#+\] 24/24 trials, \d+ s so far", smoke_study["job_output"])
    store = open_store(smoke_study["uri"])
    # no raw subject id anywhere in the text files of the store
    raw = {s for s in raw_subject_ids(tiny_phantom) if len(s) >= 4}
    assert raw
    for f in _store_files(store):
        if f.endswith((".json", ".csv", ".parquet")):
            data = store.read_bytes(f)
            assert not [s for s in raw if s.encode() in data], f


def test_existing_study_is_refused_without_resume(smoke_study, tiny_shards, capsys):
    code = main(["search", "run", "--config", str(SMOKE), "--set", f"shards={tiny_shards}", "--storage", smoke_study["uri"]])
    err = capsys.readouterr().err
    assert code == 2 and "already holds a study" in err and "--resume" in err


def test_resume_of_a_finished_study_runs_nothing(smoke_study, tiny_shards, capsys):
    store = open_store(smoke_study["uri"])
    before = {k: store.read_bytes(k.path, "done.json") for k in searches(smoke_study["cfg"])}
    code = main(["search", "run", "--config", str(SMOKE), "--set", f"shards={tiny_shards}", "--storage", smoke_study["uri"],
                 "--resume"])
    assert code == 0
    assert "12 of 12 searches already done" in capsys.readouterr().out
    assert before == {k: store.read_bytes(k.path, "done.json") for k in searches(smoke_study["cfg"])}


def test_resume_refuses_other_settings(smoke_study, tiny_shards, capsys):
    code = main(["search", "run", "--config", str(SMOKE), "--set", f"shards={tiny_shards}", "--set", "seed=7",
                 "--storage", smoke_study["uri"], "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "seed differ" in err


def test_a_study_started_before_a_setting_existed_resumes(tmp_path):
    """study.json written by an earlier version lacks settings added since (here `search.startup_trials`):
    they take their defaults on resume instead of being reported as changed; a real change is still refused."""
    from pipelines.errors import PainsearchError
    from search.study import start_study

    uri = str(tmp_path / "results")
    cfg = load_study_config(SMOKE, {"shards": "unused", "storage": uri})
    store = open_store(uri)
    start_study(cfg, store, False, print)
    study = json.loads(store.read_bytes("study.json"))
    del study["config"]["search"]["startup_trials"]
    store.write_bytes(json.dumps(study).encode(), "study.json")
    start_study(cfg, store, True, print)
    with pytest.raises(PainsearchError, match="search.trials differ"):
        start_study(cfg.model_copy(update={"search": cfg.search.model_copy(update={"trials": 5})}), store, True, print)


# ------------------------------------------------------------------ failures


@pytest.mark.parametrize("runner", RUNNERS)
def test_failing_trials_are_retried_then_recorded(tiny_shards, ray_local, tmp_path, capsys, runner):
    """vgg16 asked for ImageNet weights from an empty folder fails in every attempt; the study records it and goes on."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    out = tmp_path / "results"
    code = main(["search", "run", "--config", str(SMOKE), "--set", f"shards={tiny_shards}", "--storage", str(out),
                 "--set", "models=[vgg16]", "--set", "scenarios=[external]", "--set", "search.trials=1", "--set", "search.retries=1",
                 "--set", "train.weights=imagenet", "--set", f"train.weights_dir={empty}", "--set", f"resources.runner={runner}"])
    printed = capsys.readouterr().out
    assert code == 0
    store = open_store(str(out))
    for fold in (0, 1):
        vgg = f"searches/vgg16/external/fold-{fold}"
        done = json.loads(store.read_bytes(vgg, "done.json"))
        assert done["status"] == "failed" and done["failed_trials"] == 1
        trials = pd.read_csv(io.BytesIO(store.read_bytes(vgg, "trials.csv")), dtype={"trial_id": str})
        assert trials.loc[0, "status"] == "failed" and trials.loc[0, "failed_attempts"] == 2  # 1 run + 1 retry
        assert "vgg16" in trials.loc[0, "error"] and "weights" in trials.loc[0, "error"]
        assert trials.loc[0, "error_kind"] == "error"
        assert not store.exists(vgg, "predictions.parquet")
        attempts = store.list(vgg, "attempts")
        assert len(attempts) == 2 and "traceback" in json.loads(store.read_bytes(vgg, "attempts", attempts[0]))
    # the first failed search did not stop the second; the summary shows the gap
    assert "vgg16 external fold 0: FAILED" in printed and "vgg16 external fold 1: FAILED" in printed
    assert "2 searches done (2 failed)" in printed
    summary = pd.read_csv(io.BytesIO(store.read_bytes("summary.csv")))
    assert list(summary["status"]) == ["failed", "failed"]


@pytest.mark.parametrize("runner", RUNNERS)
def test_trials_that_tune_stops_end_cleanly(tiny_shards, ray_local, tmp_path, monkeypatch, runner):
    """ASHA stops trials part way. Here a scheduler stops every trial after its first epoch, so the stop is
    certain: each stop must end that trial's run, must not count as a failed attempt, and must let the next
    trial start (a Ray Train trial's actor cannot be reused: the search would hang; an inline one can)."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    from search import tuner
    from search.study import start_study, trials_ended, write_folds

    class StopAfterFirstEpoch(FIFOScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            return TrialScheduler.STOP

    monkeypatch.setattr(tuner, "scheduler", lambda cfg, max_epochs: StopAfterFirstEpoch())
    uri = str(tmp_path / "results")
    cfg = load_study_config(SMOKE, {"shards": str(tiny_shards), "storage": uri, "models": ["weinet"],
                                    "scenarios": ["subject_kfold"], "resources": {"runner": runner},
                                    "search": {"trials": 2, "time_budget_s": 150, "space": {"epochs": [4, 4]}}})
    store = open_store(uri)
    start_study(cfg, store, False, print)
    write_folds(cfg, store)
    key = searches(cfg)[0]
    done = tuner.run_search(cfg.model_dump(mode="json"), uri, {"model": key.model, "scenario": key.scenario, "fold": key.fold})
    trials = tuner.read_trials(store, key)
    assert done["status"] == "ok" and done["trials"] == 2 and done["failed_trials"] == 0, done
    assert list(trials["epochs_run"]) == [1, 1] and (trials["status"] == "ok").all(), trials
    assert (trials["failed_attempts"] == 0).all() and not store.list(key.path, "attempts")
    assert store.exists(key.path, "predictions.parquet")
    # each stopped run leaves one timing record, as a trained one does: the study's progress counts trials by them
    timings = [json.loads(store.read_bytes(key.path, "timing", f)) for f in store.list(key.path, "timing")]
    assert sorted(t["trial_id"] for t in timings) == sorted(trials["trial_id"]), timings
    assert {t["ended"] for t in timings} == {"stopped"} and trials_ended(store, key) == 2
    import ray

    for _ in range(30):  # the stopped runs' placement groups go back to the cluster
        if ray.available_resources().get("CPU", 0) >= 2:
            break
        time.sleep(1)
    assert ray.available_resources().get("CPU", 0) >= 2


@pytest.mark.parametrize("end", ["asha_at_the_last_epoch", "time_budget"])
def test_every_run_tune_ends_leaves_one_timing_record(tiny_shards, ray_local, tmp_path, monkeypatch, end):
    """A run Tune ends is recorded by Tune's side, once: a run stopped at its last epoch's report (as ASHA stops a
    trial that reaches `max_t`) as trained, a run the time budget cuts short as stopped."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    from search import tuner
    from search.study import start_study, trials_ended, write_folds

    class StopAtEachReport(FIFOScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            return TrialScheduler.STOP

    budget = end == "time_budget"
    if not budget:
        monkeypatch.setattr(tuner, "scheduler", lambda cfg, max_epochs: StopAtEachReport())
    uri = str(tmp_path / "results")
    cfg = load_study_config(SMOKE, {"shards": str(tiny_shards), "storage": uri, "models": ["weinet"],
                                    "scenarios": ["subject_kfold"], "resources": {"runner": "inline"},
                                    "search": {"trials": 2, "scheduler": "none", "time_budget_s": 12 if budget else 150,
                                               "space": {"epochs": [300, 300] if budget else [1, 1]}}})
    store = open_store(uri)
    start_study(cfg, store, False, print)
    write_folds(cfg, store)
    key = searches(cfg)[0]
    tuner.run_search(cfg.model_dump(mode="json"), uri, {"model": key.model, "scenario": key.scenario, "fold": key.fold})
    timings = [json.loads(store.read_bytes(key.path, "timing", f)) for f in store.list(key.path, "timing")]
    ran = [t for t in store.dirs(key.path, "train") if store.list(key.path, "train", t, "epochs")]
    assert ran and sorted(t["trial_id"] for t in timings) == sorted(ran), (timings, ran)
    assert {(t["ended"], t["recorded_by"]) for t in timings} == {("stopped" if budget else "trained", "tune")}
    assert trials_ended(store, key) == len(ran)


def test_a_reused_actors_memory_stays_flat_over_twenty_trials(tiny_shards, ray_local, tmp_path):
    """Twenty inline trials, one at a time, all in one reused Tune actor: Keras's state is cleared between them, so
    the actor's resident memory after the last trial is within 10 % of after the second."""
    from search import tuner
    from search.study import start_study, write_folds

    uri = str(tmp_path / "results")
    cfg = load_study_config(SMOKE, {"shards": str(tiny_shards), "storage": uri, "models": ["weinet"],
                                    "scenarios": ["subject_kfold"], "resources": {"runner": "inline"},
                                    "search": {"trials": 20, "max_concurrent_trials": 1, "scheduler": "none",
                                               "space": {"epochs": [1, 1]}}})
    store = open_store(uri)
    start_study(cfg, store, False, print)
    write_folds(cfg, store)
    key = searches(cfg)[0]
    done = tuner.run_search(cfg.model_dump(mode="json"), uri, {"model": key.model, "scenario": key.scenario, "fold": key.fold})
    assert done["status"] == "ok" and done["trials"] == 20, done
    timings = sorted((json.loads(store.read_bytes(key.path, "timing", f)) for f in store.list(key.path, "timing")),
                     key=lambda t: t["ended_at"])  # in the order they ran
    assert len(timings) == 20 and len({t["pid"] for t in timings}) == 1  # one actor ran them all
    rss = [t["rss_mb"] for t in timings]
    assert rss[-1] <= 1.10 * rss[1], rss


def test_out_of_memory_is_named():
    from search.trial import error_kind, root_error

    tb = ("Traceback...\nray.exceptions.RayTaskError(OutOfMemoryError): ray::train_fn()\n"
          "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.\n")
    assert error_kind(tb) == "out_of_memory"
    assert error_kind("tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating") == "out_of_memory"
    assert error_kind("ValueError: bad") == "error"
    assert root_error("TrainingFailedError: x\n  File ...\npipelines.errors.PainsearchError: no weights", "f") == \
        "PainsearchError: no weights"


# ------------------------------------------------------------------ resume after SIGKILL, on S3


def _s3_env(seaweed) -> dict[str, str]:
    return {**os.environ, **s3_vars(seaweed)}


@pytest.mark.parametrize("runner, cut, snapshot_cut", [
    # the smoke study's two networks on one scenario (smoke_study runs all three, on a cluster): the second search
    # is vgg16's, slow enough that the kill lands before its second trial ends
    ("inline", {"scenarios": ["subject_kfold"]}, False),
    ("ray_train", {"models": ["weinet"], "scenarios": ["subject_kfold"]}, True),  # two searches of two trials
], ids=["inline-two-networks", "ray_train-cut"])
def test_study_locally_killed_then_resumed_on_s3(tiny_shards, s3_env, tmp_path, runner, cut, snapshot_cut):
    """The smoke config in local mode (the command starts Ray in-process), results on S3. The driver, and the Ray
    it started, are SIGKILLed in the middle of a search; --resume finishes the study from the S3 store: the
    finished search is not run again, nor is the finished trial of the broken one, and no search is lost.
    With `snapshot_cut`, the kill (or an outage) also cut Tune's snapshot upload short: the store holds Tune's
    experiment state but not its searcher's."""
    uri = f"s3://painsearch/local-study-{runner}"
    cmd = [sys.executable, "-m", "cluster.cli", "search", "run", "--config", str(SMOKE), "--storage", uri,
           "--set", f"shards={tiny_shards}", "--set", f"resources.runner={runner}",
           *[a for k, v in cut.items() for a in ("--set", f"{k}=[{','.join(v)}]")]]
    cfg = load_study_config(SMOKE, {"shards": str(tiny_shards), "storage": uri, "resources": {"runner": runner}, **cut})
    keys = searches(cfg)
    first, second = keys[0].path, keys[1].path
    env = _s3_env(s3_env)
    log = open(tmp_path / "first.log", "wb")
    # one search at a time until the kill, so that "the first is done and the second half way" is well defined
    proc = subprocess.Popen(cmd + ["--set", "search.concurrent_searches=1"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    store = open_store(uri)
    deadline = time.time() + 420
    try:
        while not (store.exists(first, "done.json") and store.list(second, "timing")):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "the study did not get far enough to be killed half way"
            time.sleep(0.5)
        time.sleep(2)  # the second search's first trial is finished; its second is running
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and every process it started (its own Ray)
        proc.wait()
        log.close()
    assert not store.exists(second, "done.json")
    done_before = store.read_bytes(first, "done.json")
    finished_trial = store.list(second, "timing")[0].split("-")[0]
    if snapshot_cut:
        tune_dir = (second, TUNE_DIR, keys[1].slug)
        searcher_states = [f for f in store.list(*tune_dir) if f.startswith("searcher-state-")]
        assert searcher_states, store.list(*tune_dir)
        for name in searcher_states:
            store.delete(*tune_dir, name)

    # resumed with the config's own concurrency: a setting that may change on resume
    try:
        again = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    except subprocess.TimeoutExpired as exc:  # what the resumed run was doing when it ran over its time
        pytest.fail(f"the resumed study ran over {exc.timeout} s:\n{exc.stdout.decode(errors='replace')[-6000:]}\n"
                    f"{exc.stderr.decode(errors='replace')[-6000:]}")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming the study" in again.stdout and f"1 of {len(keys)} searches already done" in again.stdout
    assert f"{len(keys)} searches done (0 failed)" in again.stdout
    dones = check_complete(uri, cfg)
    assert store.read_bytes(first, "done.json") == done_before  # not run again
    assert dones[keys[1]]["restored"] is True
    trials = pd.read_csv(io.BytesIO(store.read_bytes(second, "trials.csv")), dtype={"trial_id": str})
    assert finished_trial in set(trials["trial_id"])
    # Optuna's journal closed the trial Tune went on with, also where the searcher was rebuilt without Tune's snapshot
    (tmp_path / "optuna.journal").write_bytes(store.read_bytes(second, OPTUNA_JOURNAL))
    states = [t.state for t in optuna.load_study(study_name=keys[1].slug, storage=JournalStorage(
        JournalFileBackend(str(tmp_path / "optuna.journal")))).trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * cfg.search.trials, states


# ------------------------------------------------------------------ ray job submit to a real cluster


def test_job_api_refuses_a_request_without_the_token(ray_head):
    anonymous = {k: v for k, v in ray_head["env"].items() if k != "RAY_AUTH_TOKEN"}
    anonymous["RAY_AUTH_TOKEN_PATH"] = "/nonexistent"
    refused = subprocess.run([str(VENV_BIN / "ray"), "job", "list", "--address", ray_head["address"]], env=anonymous,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "token" in (refused.stdout + refused.stderr).lower()


def test_the_smoke_study_job_succeeded(smoke_study):
    """`ray job submit --working-dir . -- painsearch search run --config configs/smoke.yaml --storage s3://...`"""
    out = smoke_study["job_output"]
    assert "succeeded" in out and "12 searches done (0 failed)" in out


def test_nothing_the_study_writes_or_submits_holds_a_secret(smoke_study, seaweed, ray_head):
    """The S3 credentials stay with the nodes: no byte of the results store (Tune's pickles included) and nothing
    of the submitted job (its runtime env, which the dashboard shows) holds them."""
    from conftest import S3_KEY, S3_SECRET

    secrets = (S3_SECRET.encode(), S3_KEY.encode())
    client = seaweed["client"]
    prefix = smoke_study["uri"].removeprefix("s3://painsearch/") + "/"
    scanned = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="painsearch", Prefix=prefix):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket="painsearch", Key=obj["Key"])["Body"].read()
            assert not any(s in body for s in secrets), obj["Key"]
            scanned += obj["Key"].endswith(".pkl")
    assert scanned >= 12  # every search's tuner.pkl was read
    jobs = subprocess.run([str(VENV_BIN / "ray"), "job", "list", "--address", ray_head["address"]],
                          env=ray_head["env"], capture_output=True, text=True, timeout=120)
    assert jobs.returncode == 0 and seaweed["endpoint"] in jobs.stdout, jobs.stderr
    assert not any(s.decode() in jobs.stdout for s in secrets)
