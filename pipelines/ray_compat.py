"""Every private Ray name painsearch relies on, in one place (checked against Ray 2.60).

Ray keeps these out of its public API, so an upgrade may move them; `tests/test_ray_compat.py` imports
each one and fails with a sentence naming what moved. Nothing else in painsearch imports a private Ray
module or repeats a Ray naming convention.
"""

from __future__ import annotations

import json
import os
from typing import Any

# The folders Ray Train and Tune write a run's checkpoints to start with this (`checkpoint_<time>` in Ray
# Train V2, `checkpoint_<index>` in Tune).
CHECKPOINT_PREFIX = "checkpoint_"


def train_session():
    """The current Ray Train / Tune session (`ray.train._internal.session`), or None outside one."""
    from ray.train._internal.session import get_session

    return get_session()


def session_stopped(session) -> bool:
    """Whether Tune has stopped the trial that started in `session`: it set the session's stop event, or
    it has shut the session down already (a newer one, or none, is current)."""
    return session is not None and (session.stop_event.is_set() or train_session() is not session)


def node_address() -> str:
    """This worker's `host:port` for TF_CONFIG, picked the way Ray Train's own TensorFlow backend does."""
    from ray._common.network_utils import build_address
    from ray.train._internal.utils import get_address_and_port

    return build_address(*get_address_and_port())


def tensorflow_framework():
    """Ray Train V2's tag for TensorFlow runs (a backend config declares its framework)."""
    from ray.train.v2._internal.util import TrainingFramework

    return TrainingFramework.TENSORFLOW


def tensorflow_trainer_classes() -> tuple[type, type]:
    """(Ray Train V2's TensorflowTrainer, its DataParallelTrainer base): `KerasTrainer` subclasses the first
    and calls the second's constructor, skipping the first's, which imports TensorFlow."""
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
    from ray.train.v2.tensorflow.tensorflow_trainer import TensorflowTrainer

    return TensorflowTrainer, DataParallelTrainer


def job_env_vars() -> dict[str, str]:
    """The env vars of the runtime env `ray job submit` gave this driver (none outside a job)."""
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    raw = os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR)
    if not raw:
        return {}
    config: dict[str, Any] = json.loads(raw)
    return ((config.get("runtime_env") or {}).get("env_vars")) or {}


def launcher_docker_run(docker: dict[str, Any], as_head: bool, nvidia_runtime: bool, home: str = "/home/ray") -> str:
    """The `docker run` line Ray's cluster launcher runs on a node for a config's `docker:` section, rendered by
    Ray's own `docker_start_cmds`. The steps before it need an SSH session to the node and are repeated here as Ray
    2.60 takes them: the options merged as `DockerCommandRunner.run_init` merges them (`run_options`, then
    `head_run_options` or `worker_run_options`), and `--runtime=nvidia` added as `_configure_runtime` adds it on a host
    with NVIDIA's container runtime whose `nvidia-smi` answers (the shared-memory size it may add is left out)."""
    from ray.autoscaler._private.docker import docker_start_cmds

    options = list(docker.get("run_options", [])) + list(docker.get(f"{'head' if as_head else 'worker'}_run_options", []))
    if nvidia_runtime and not docker.get("disable_automatic_runtime_detection"):
        options.append("--runtime=nvidia")
    image = docker.get(f"{'head' if as_head else 'worker'}_image", docker.get("image"))
    return docker_start_cmds("ubuntu", image, {}, docker["container_name"], options, "painsearch", home, "docker")


def optuna_search_parts(searcher) -> tuple[Any, dict[str, Any], Any, set[str]]:
    """A Tune `OptunaSearch`'s (search space, Tune trial id -> Optuna trial, Optuna study, Tune ids of the trials it
    has closed): what `search.optuna_searcher` needs to go on from Optuna's journal when Tune's snapshot lost the
    searcher."""
    return searcher._space, searcher._ot_trials, searcher._ot_study, searcher._completed_trials


def tune_snapshot_names() -> dict[str, str]:
    """The names in Tune's snapshot of a search, from Tune's own classes: the file-name prefixes of the experiment
    state and of the search generator's state, the generator state's key for the concurrency limiter, and the
    logger of Tune's controller."""
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search.concurrency_limiter import ConcurrencyLimiter
    from ray.tune.search.search_generator import SearchGenerator

    return {"experiment_state": TuneController.CKPT_FILE_TMPL.split("{}")[0],
            "generator_state": SearchGenerator.CKPT_FILE_TMPL.split("{}")[0],
            "limiter": f"name:{ConcurrencyLimiter.__name__}", "controller_log": TuneController.__module__}


# What Tune's controller logs when it cannot read a search's saved state and starts the search afresh instead
# (`TuneController.resume`); Tune raises nothing there, so its log record is the one sign.
TUNE_RESTORE_FAILED = "Failed to restore the run state"


# How long an idle task worker lives once the node has more workers than CPUs (Ray's system config
# `idle_worker_killing_time_threshold_ms`, 1 s by default). Each search's scoring task imports TensorFlow, seconds
# of a CPU: a worker kept a minute serves the next search's scoring too. No idle worker holds a GPU's memory this
# way: a task given a GPU ends its worker when it returns (`max_calls=1`, set where painsearch makes such tasks).
IDLE_WORKER_S = 60
IDLE_WORKER_SETTING = "idle_worker_killing_time_threshold_ms"


def system_config() -> dict[str, int]:
    """Ray's `_system_config` for a cluster `ray.init` starts here."""
    return {IDLE_WORKER_SETTING: IDLE_WORKER_S * 1000}


def node_env() -> dict[str, str]:
    """The same settings as environment variables, for a `ray start` (Ray reads `RAY_<setting>` at a node's start)."""
    return {f"RAY_{k}": str(v) for k, v in system_config().items()}


# name -> what it is, for the test that checks every one still resolves
ALL = {"train_session": train_session, "node_address": node_address, "tensorflow_framework": tensorflow_framework,
       "tensorflow_trainer_classes": tensorflow_trainer_classes, "job_env_vars": job_env_vars,
       "launcher_docker_run": lambda: launcher_docker_run({"image": "i", "container_name": "c"}, True, False),
       "optuna_search_parts": lambda: optuna_search_parts(_optuna_search()), "tune_snapshot_names": tune_snapshot_names,
       "tune_restore_failed": lambda: _source_of("ray.tune.execution.tune_controller")}


def _optuna_search():
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(space={"x": tune.uniform(0, 1)}, metric="m", mode="max")


def _source_of(module: str) -> str:
    import importlib
    import inspect

    return inspect.getsource(importlib.import_module(module))
