"""Where Ray runs: join the cluster named by RAY_ADDRESS, or start one in-process on this machine.

Only this package calls `ray.init`, so library code works the same under `ray job submit`.
"""

from __future__ import annotations

import os

# Ray's single-machine mode: with no cluster to join, every Ray process listens on 127.0.0.1 only.
# It must be set before Ray is imported, so importing this module sets it (the CLI imports it first).
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from pipelines.bootstrap import ENV_DEFAULTS  # noqa: E402

RUNTIME_ENV_VARS = {**ENV_DEFAULTS, "RAY_DEDUP_LOGS": "0",
                    "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
                    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def pin_ray_address() -> None:
    """Runs in every worker painsearch starts, on a local cluster or a joined one: names the worker's cluster in
    RAY_ADDRESS. Ray's state API, which Ray Train's placement-group cleaner calls, otherwise looks for the
    cluster among the Ray instances running on the node and, when there are two, refuses to choose: the
    cleaner's thread dies and a Ray Train trial never starts."""
    import ray

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


# False: Ray's and Tune's messages stay in Ray's log files, the terminal shows painsearch's progress only
# (the CLI's --verbose sets it)
VERBOSE = True


def ensure_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool | None = None) -> None:
    """Connect once. A local cluster listens on 127.0.0.1 only, its dashboard too: nothing is exposed.

    The dashboard is not for show: it serves Ray's state API, which Ray Train's placement-group cleaner
    polls; without it, a Ray Train trial that Tune stops early (ASHA) keeps its worker's CPUs (or GPUs)
    until the study ends. `quiet` keeps the workers' output in Ray's log files instead of this
    terminal (the demo prints its own progress lines; the results store keeps every trial's errors)."""
    import ray

    if ray.is_initialized():
        return
    quiet = not VERBOSE if quiet is None else quiet
    from pipelines.ray_compat import job_env_vars, system_config
    from pipelines.storage import s3_env

    address = address or os.environ.get("RAY_ADDRESS")
    # workers reach the same S3 store as this driver; under `ray job submit`, what the job's own runtime
    # env already sets is left to it (Ray refuses a driver that sets the same variable again)
    env_vars = {**RUNTIME_ENV_VARS, **s3_env()}
    env_vars = {k: v for k, v in env_vars.items() if k not in job_env_vars()}
    env = {"env_vars": env_vars, "worker_process_setup_hook": "cluster.local.pin_ray_address"}
    if quiet:
        import logging

        import ray.data  # noqa: F401  (Ray Data sets up its own loggers on import: quiet them after)

        for name in ("ray", "ray.tune", "ray.train", "ray.data", "ray.dashboard"):
            logging.getLogger(name).setLevel(logging.ERROR)
        for handler in logging.getLogger("ray.data").handlers:  # the terminal only: ray-data.log keeps everything
            if isinstance(handler, logging.StreamHandler):
                handler.setLevel(logging.WARNING)
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=not quiet)
    else:
        # "local": a new in-process cluster, never one a `ray start` on this machine left recorded (RAY_ADDRESS names
        # a cluster to join); only a new cluster takes the system config
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", runtime_env=env,
                 log_to_driver=not quiet, configure_logging=False, _system_config=system_config())
