"""Which devices a process trains or scores on, and the stop when Ray gave it a GPU that TensorFlow cannot use.

TensorFlow that cannot load CUDA (a driver too old, a library missing, a container that does not expose the
card) lists no GPU and runs every op on the CPU, with one warning in a log nobody reads: a trial given half a
card would train for hours on the CPU while holding the card's share. `require_given_gpus` turns that into a
stop with one sentence. Machines that declare GPUs they lack (the tests' Ray nodes) opt out explicitly with
`train.allow_cpu_fallback`.
"""

from __future__ import annotations

import os
from typing import Any

from pipelines.errors import PainsearchError


class GpuMissingError(PainsearchError):
    """Ray gave this process a GPU and TensorFlow sees none."""


def given_gpus() -> list[str]:
    """The GPU ids Ray assigned to this task or actor (any share of a card counts); empty outside Ray."""
    import sys

    if "ray" not in sys.modules:
        return []
    import ray

    if not ray.is_initialized():
        return []
    return [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]


def tensorflow_gpus() -> list:
    """The GPUs TensorFlow sees (with memory growth set: `pipelines.bootstrap.tensorflow`)."""
    from pipelines.bootstrap import tensorflow

    return tensorflow().config.list_physical_devices("GPU")


def build_info() -> dict[str, Any]:
    """What this TensorFlow was built for: CUDA and cuDNN versions, the GPU architectures it carries kernels for."""
    from pipelines.bootstrap import tensorflow

    info = dict(tensorflow().sysconfig.get_build_info())
    return {k: info.get(k) for k in ("is_cuda_build", "cuda_version", "cudnn_version", "cuda_compute_capabilities")}


def where_native_log() -> str:
    """Where the TensorFlow messages of this Ray worker go (the stop below is only ever made in one)."""
    import ray

    return f"`ray logs worker --pid {os.getpid()} --node-id {ray.get_runtime_context().get_node_id()} --err`"


def require_given_gpus(what: str, allow_cpu_fallback: bool = False) -> list:
    """TensorFlow's GPUs; a `GpuMissingError` when Ray gave this process a GPU and TensorFlow sees none, unless
    `allow_cpu_fallback`. `what` names the work (a trial, the refit, the test scoring) in the sentence."""
    seen = tensorflow_gpus()
    given = given_gpus()
    if seen or not given or allow_cpu_fallback:
        return seen
    info = build_info()
    built = (f"a CUDA {info['cuda_version']} / cuDNN {info['cudnn_version']} build" if info["is_cuda_build"]
             else "a build without CUDA")
    raise GpuMissingError(
        f"{what} was given GPU {', '.join(given)} by Ray (CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}), but TensorFlow ({built}) sees no GPU and would train "
        f"on the CPU; its reason is in {where_native_log()}: check `nvidia-smi` on the node (a driver for CUDA "
        f"{info['cuda_version'] or '12'}), that the container is given the card (docker --gpus all, "
        f"NVIDIA_VISIBLE_DEVICES), and that TensorFlow was installed with `tensorflow[and-cuda]`, or set "
        f"resources.gpus_per_worker to 0 to train on the CPU.")


def describe() -> str:
    """For a user (`predict`, `export`): the device this process computes on."""
    seen = tensorflow_gpus()
    if not seen:
        return "on the CPU (TensorFlow sees no GPU)"
    return f"on {len(seen)} GPU(s): {', '.join(d.name for d in seen)}"
