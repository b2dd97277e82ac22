"""What a Python process of painsearch sets before TensorFlow is imported: the one home of that order.

- `TF_USE_LEGACY_KERAS=1`: the training loop is written against tf-keras, because Keras 3 with
  MultiWorkerMirroredStrategy fails under Ray Train (docs/stack.md). TensorFlow reads the
  variable once, at import, so it is set here, as a default the user may override.
- torch and torchvision before TensorFlow, in a process that both detects faces (MTCNN: torch) and
  runs a network: importing torchvision after TensorFlow kills the process with a segmentation fault
  (torch 2.14.1, torchvision 0.29.1, TensorFlow 2.21); the other order works. Such a process calls
  `torch_first()` before anything imports TensorFlow. The processes that only train or explain (trials,
  Ray Train workers, scoring and LIME tasks) never import torch, which costs seconds each, and
  `pipelines.preprocess.faces.FaceDetector` refuses to load after TensorFlow instead of crashing.

Ray workers get the same variables through the runtime env (`cluster.local.RUNTIME_ENV_VARS`), and the
deploy files set them for their nodes: those are not Python and keep their own setting.
"""

from __future__ import annotations

import os
import sys

# TF_FORCE_GPU_ALLOW_GROWTH: every GPU grows its memory as needed even in a process that touches a device before
# `tensorflow()` runs, so trials given a share of a card each take what they use, not the whole card.
ENV_DEFAULTS = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}

for _name, _value in ENV_DEFAULTS.items():
    os.environ.setdefault(_name, _value)


def torch_first() -> None:
    """Import torch and torchvision now, unless this process has loaded TensorFlow already."""
    if "tensorflow" not in sys.modules:
        import torch  # noqa: F401
        import torchvision  # noqa: F401


def tensorflow():
    """The `tensorflow` module, imported with the settings above in place; what every TensorFlow user calls.

    Every GPU it sees gets memory growth before anything touches it: by default TensorFlow takes a whole card's
    memory, so of two trials given half a card each the second would run out of memory. In a Ray task or actor,
    TensorFlow's thread pools are sized from the CPUs Ray gave it (`ray_cpu_threads`), not from the node's cores,
    so trials that share a node do not oversubscribe it."""
    import tensorflow as tf

    threads = ray_cpu_threads()
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow runs already in this process: its pools were sized then
            pass
    for device in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:  # the device is initialised already: growth was set then, or cannot change now
            pass
    return tf


def ray_cpu_threads() -> int | None:
    """Threads for each of TensorFlow's pools in a Ray worker: the CPUs Ray gave it, rounded up, at least one;
    None outside a Ray worker (a driver, a notebook) or in one given no CPU, where TensorFlow keeps its default."""
    if "ray" not in sys.modules:
        return None
    import math

    import ray

    if not ray.is_initialized():
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
    except AssertionError:  # Ray answers only in a worker: this is the driver
        return None
    return max(1, math.ceil(cpus - 1e-9)) if cpus > 0 else None
