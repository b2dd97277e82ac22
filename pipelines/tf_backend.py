"""Ray Train's TensorFlow set-up (a TF_CONFIG naming every worker) from a module that does not import TensorFlow.

`TensorflowTrainer` ships its backend config to every run's controller process, and the stock
`ray.train.tensorflow.TensorflowConfig` lives in a package whose `__init__` imports TensorFlow: each
controller spent about 3 s of CPU importing TensorFlow only to unpickle that config, though it never
runs a TensorFlow op. `KerasConfig` does the same set-up on the workers and costs the controller nothing.
`KerasTrainer` is the stock `TensorflowTrainer` minus one line: its constructor imports that package for
the default config, so every Tune trial, which only builds and waits on the run, imported TensorFlow too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray.train.backend import Backend, BackendConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
from ray.train.v2.tensorflow.tensorflow_trainer import TensorflowTrainer


def _address() -> str:
    from ray._common.network_utils import build_address
    from ray.train._internal.utils import get_address_and_port

    return build_address(*get_address_and_port())


def _set_tf_config(addresses: list[str], index: int) -> None:
    """What MultiWorkerMirroredStrategy reads on each worker: the cluster and this worker's place in it."""
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
    os.environ["TF_USE_LEGACY_KERAS"] = "1"


class _KerasBackend(Backend):
    def on_start(self, worker_group, backend_config: BackendConfig) -> None:
        addresses = worker_group.execute(_address)
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
        from ray.train.v2._internal.util import TrainingFramework

        return TrainingFramework.TENSORFLOW


class KerasTrainer(TensorflowTrainer):
    """A `TensorflowTrainer` with `KerasConfig` by default, built without importing TensorFlow."""

    def __init__(self, train_loop_per_worker: Any, *, tensorflow_config: BackendConfig | None = None, **kwargs: Any) -> None:
        DataParallelTrainer.__init__(self, train_loop_per_worker, backend_config=tensorflow_config or KerasConfig(), **kwargs)
