"""Where Ray runs: join the cluster named by RAY_ADDRESS, or start one in-process on this machine.

Only this package calls `ray.init`, so library code works the same under `ray job submit`.
"""

from __future__ import annotations

import os

RUNTIME_ENV_VARS = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_DEDUP_LOGS": "0"}


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect once. A local cluster binds to 127.0.0.1 and runs no dashboard: nothing is exposed."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    env = {"env_vars": dict(RUNTIME_ENV_VARS)}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=env,
                 _node_ip_address="127.0.0.1", log_to_driver=True, configure_logging=False)
