"""Every private TensorFlow and tf-keras name painsearch relies on, in one place (checked against TensorFlow 2.21
and tf-keras 2.21).

Neither library offers these in its public API, so an upgrade may move them; `tests/test_tf_compat.py` runs each
one on a real model and fails with a sentence naming what moved. Nothing else in painsearch reads a private
TensorFlow or tf-keras attribute.
"""

from __future__ import annotations

from typing import Any


def gradient_registry() -> dict[str, Any]:
    """TensorFlow's global registry of gradient functions, by name. Every trace of a `tf.custom_gradient` adds a
    name there, and the entry keeps the traced graph alive (`pipelines.training.keras_state` drops them)."""
    from tensorflow.python.framework import ops

    return ops._gradient_registry._registry


def layer_generators(model) -> list[tuple[Any, Any]]:
    """(tf.random.Generator, its state now) of every random layer of `model`: created now, since tf-keras makes
    them at a layer's first call, so that their initial states can be kept and restored."""
    found = []
    for layer in model.submodules:
        rng = getattr(layer, "_random_generator", None)
        if rng is not None and hasattr(rng, "_maybe_init"):
            rng._maybe_init()
            if getattr(rng, "_generator", None) is not None:
                found.append((rng._generator, rng._generator.state.numpy()))
    return found


def loss_scale_variables(optimizer) -> list[tuple[Any, Any]]:
    """Under mixed precision, (variable, its value now) of the optimizer's dynamic loss scale and its count of good
    steps, which tf-keras keeps apart from the optimizer's `variables`; none otherwise."""
    variables = getattr(getattr(optimizer, "_loss_scale", None), "_weights", {}).values()
    return [(v, v.numpy()) for v in variables]


# name -> what it reads, for the test that checks every one still works
ALL = {"gradient_registry": gradient_registry, "layer_generators": layer_generators,
       "loss_scale_variables": loss_scale_variables}
