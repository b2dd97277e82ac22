"""What a trained model leaves behind in a long-lived process (an inline trial's reused Tune actor), and its release.

`keras.backend.clear_session()` drops Keras's graph and layers, but not everything: each trace of a train step
registers the gradient of the default strategy's `all_reduce` (a `tf.custom_gradient`) in TensorFlow's global
gradient registry under a new name, and the registry keeps the traced graph alive through it, about 9 MB per
trial for a small network (TensorFlow 2.21; tensorflow/tensorflow#62854, keras-team/tf-keras#286). The names a
trial added are dropped once its model is gone; the graphs that used them went with it.
"""

from __future__ import annotations

import ctypes
import gc

from pipelines.tf_compat import gradient_registry


def registered_gradients() -> frozenset[str]:
    """The gradient names registered now: what to keep when a trial's model is released."""
    return frozenset(gradient_registry())


def release(before: frozenset[str]) -> None:
    """Drop Keras's graph and layers, the gradients registered since `before`, then the freed heap, which glibc
    keeps mapped (and resident) until asked to give it back.

    What survives the collection (the kept model, `pipelines.training.model_cache`, with whatever else is alive) is
    frozen out of the collector's way, as the actor's imports are at its start: while the kept model serves the next
    trials, each collection scans only what they made. A kept model that is replaced unfreezes it all (`thaw`), so
    that its graphs can go at the next release, which then scans everything once."""
    import tf_keras as keras

    keras.backend.clear_session()
    registry = gradient_registry()
    for name in [n for n in registry if n not in before and n.startswith("CustomGradient-")]:
        del registry[name]
    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps its own policy
        pass


def thaw() -> None:
    """Hand everything frozen back to the collector: what was kept between trials is about to be dropped."""
    gc.unfreeze()
