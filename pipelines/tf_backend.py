"""Ray Train's TensorFlow set-up (a TF_CONFIG naming every worker) from a module that does not import TensorFlow.

`TensorflowTrainer` ships its backend config to every run's controller process, and the stock
`ray.train.tensorflow.TensorflowConfig` lives in a package whose `__init__` imports TensorFlow: each
controller spent about 3 s of CPU importing TensorFlow only to unpickle that config, though it never
runs a TensorFlow op. `KerasConfig` does the same set-up on the workers and costs the controller nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import ray
from ray.train.backend import Backend, BackendConfig


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
