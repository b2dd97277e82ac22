"""Ray Train's TensorFlow set-up (a TF_CONFIG naming every worker) from a module that does not import TensorFlow.

`TensorflowTrainer` ships its backend config to every run's controller process, and the stock
`ray.train.tensorflow.TensorflowConfig` lives in a package whose `__init__` imports TensorFlow: each
controller would spend seconds of CPU importing TensorFlow only to unpickle that config, though it never
runs a TensorFlow op. `KerasConfig` does the same set-up on the workers and costs the controller nothing.
`KerasTrainer` is the stock `TensorflowTrainer` minus one line: its constructor imports that package for
the default config, so every process that only builds and waits on a run would import TensorFlow too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray.train.backend import Backend, BackendConfig

from pipelines.bootstrap import ENV_DEFAULTS
from pipelines.ray_compat import node_address, tensorflow_framework, tensorflow_trainer_classes

_TensorflowTrainer, _DataParallelTrainer = tensorflow_trainer_classes()


def _set_tf_config(addresses: list[str], index: int) -> None:
    """What MultiWorkerMirroredStrategy reads on each worker: the cluster and this worker's place in it."""
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


class _KerasBackend(Backend):
    def on_start(self, worker_group, backend_config: BackendConfig) -> None:
        addresses = worker_group.execute(node_address)
        ray.get([worker_group.execute_single_async(i, _set_tf_config, addresses=addresses, index=i)
                 for i in range(len(worker_group))])


@dataclass
class KerasConfig(BackendConfig):
    """Pass as `TensorflowTrainer(..., tensorflow_config=KerasConfig())`."""

    @property
    def backend_cls(self):
        return _KerasBackend

    @property
    def framework(self):
        return tensorflow_framework()


class KerasTrainer(_TensorflowTrainer):
    """A `TensorflowTrainer` with `KerasConfig` by default, built without importing TensorFlow."""

    def __init__(self, train_loop_per_worker: Any, *, tensorflow_config: BackendConfig | None = None, **kwargs: Any) -> None:
        _DataParallelTrainer.__init__(self, train_loop_per_worker, backend_config=tensorflow_config or KerasConfig(),
                                      **kwargs)
