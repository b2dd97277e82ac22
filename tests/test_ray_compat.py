"""Every private Ray name painsearch relies on still resolves (pipelines/ray_compat.py): an upgrade that moves one
fails here, with the name in the test's id, not in the middle of a study."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pipelines import ray_compat

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"


@pytest.mark.parametrize("name", sorted(ray_compat.ALL))
def test_each_private_ray_name_resolves(name, monkeypatch):
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    monkeypatch.delenv(RAY_JOB_CONFIG_JSON_ENV_VAR, raising=False)
    value = ray_compat.ALL[name]()
    if name == "train_session":
        assert value is None  # outside a trial
    elif name == "node_address":
        assert re.fullmatch(r"[\d.]+:\d+", value), value
    elif name == "tensorflow_framework":
        assert "tensorflow" in str(value).lower()
    elif name == "tensorflow_trainer_classes":
        trainer, base = value
        assert issubclass(trainer, base)
    elif name == "job_env_vars":
        assert value == {}  # not a job's driver
    elif name == "launcher_docker_run":
        assert value.startswith("docker run") and "--name c" in value and value.endswith("i bash")
    elif name == "optuna_search_parts":
        space, trials, study, completed = value
        assert space and trials == {} and study is not None and completed == set()
    elif name == "tune_snapshot_names":
        assert value == {"experiment_state": "experiment_state-", "generator_state": "search_gen_state-",
                         "limiter": "name:ConcurrencyLimiter", "controller_log": "ray.tune.execution.tune_controller"}
    elif name == "tune_restore_failed":
        assert ray_compat.TUNE_RESTORE_FAILED in value, (
            "Tune's controller no longer logs ray_compat.TUNE_RESTORE_FAILED when a restore fails: find what "
            "TuneController.resume does now and update pipelines/ray_compat.py and search/tune_snapshot.py")
    else:
        pytest.fail(f"{name} has no check here")


def test_a_job_drivers_env_vars_are_read_from_rays_job_config(monkeypatch):
    import json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    monkeypatch.setenv(RAY_JOB_CONFIG_JSON_ENV_VAR, json.dumps({"runtime_env": {"env_vars": {"A": "1"}}}))
    assert ray_compat.job_env_vars() == {"A": "1"}


def test_an_idle_task_worker_is_kept_for_the_next_task_and_a_gpu_tasks_is_not(ray_local):
    """A search's scoring task imports TensorFlow: on a node with more workers than CPUs, the worker it ran on is
    kept a minute (`ray_compat.system_config`) for the next search's scoring, not ended after Ray's default second.
    A scoring task given a GPU ends its worker when it returns, so no idle worker keeps a card's memory."""
    import time

    import ray

    from search.config import load_study_config
    from search.tuner import _remote

    @ray.remote(num_cpus=0.5)
    class Busy:  # more workers than the node has CPUs: Ray ends idle task workers only then
        def pid(self) -> int:
            return os.getpid()

    def pid_of() -> int:  # defined here: Ray workers cannot import test modules
        return os.getpid()

    busy = [Busy.remote() for _ in range(3)]
    ray.get([b.pid.remote() for b in busy])
    cfg = load_study_config(SMOKE, {"shards": "unused"})
    pid = _remote(pid_of, cfg)
    first = ray.get(pid.remote())
    time.sleep(5)  # five times Ray's default idle life of a worker
    assert ray.get(pid.remote()) == first
    for b in busy:
        ray.kill(b)
    gpu = load_study_config(SMOKE, {"shards": "unused", "resources": {"gpus_per_worker": 0.5}})
    assert _remote(pid_of, gpu)._default_options["max_calls"] == 1
    assert _remote(pid_of, cfg)._default_options["max_calls"] == 0
