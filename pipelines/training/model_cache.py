"""A compiled model kept for the next trial of the same network in a long-lived process (an inline trial's reused Tune
actor), handed out in the state a fresh build and compile would have.

Building a network, compiling it and tracing its train step cost a trial as much as a short epoch of the smoke
study, whatever the number of epochs it then trains (timm and keras.applications build once and re-initialise as
well). A trial of the same network, size, depth, seed, batch size, optimizer and precision policy gets the kept
model back with what a fresh build would give it: the initial weights (those of the first build, made after the same
`set_random_seed`), the initial states of the augmentation layers' generators, its optimizer's initial variables
(step count, slots, loss scale) with the trial's learning rate, and zeroed metrics. Its traced train step (and
inference pass, `inference`) is kept: every variable the step reads is reset in place, and dropout's seeded random
ops start over when the trial's `set_random_seed` clears TensorFlow's kernel cache, as they would in a new trace. A
trial on a reused actor trains as it would on a fresh one (tests/test_train.py), without tracing again. One model is
kept: a trial of another network replaces it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.config import TrainConfig
from pipelines.tf_compat import layer_generators, loss_scale_variables


@dataclass
class _Kept:
    key: tuple
    model: Any
    weights: list
    generators: list  # (tf.random.Generator, its state right after the build)
    loss_scale: list  # (loss-scale variable, its initial value): none unless mixed precision
    forward: Any = None  # the traced inference pass (`inference`), once a trial has scored with it


_KEPT: list[_Kept] = []


def _key(cfg: TrainConfig, policy: str, optimizer: str) -> tuple:
    """What the compiled model and its traced step depend on (the learning rate and epochs do not: the learning
    rate is a variable the step reads)."""
    return (cfg.model, cfg.n_classes, cfg.size, cfg.weights, cfg.weights_dir, cfg.finetune_depth, cfg.preprocessing,
            cfg.augment, cfg.seed, policy, optimizer, cfg.batch_size, cfg.steps_per_execution)


def _reset_optimizer(optimizer, loss_scale: list, learning_rate: float) -> None:
    """The optimizer as before its first step: the optimizers painsearch offers (`pipelines.training.loop`: Adam,
    RMSprop, SGD) start their step count and every slot at zero; the loss scale at its initial value."""
    import tensorflow as tf

    for variable in optimizer.variables:
        variable.assign(tf.zeros_like(variable))
    for variable, value in loss_scale:
        variable.assign(value)
    optimizer.learning_rate = learning_rate


def compiled_model(cfg: TrainConfig, optimizer: str, learning_rate: float, build: Callable[[], Any],
                   compile: Callable[[Any], None], reuse: bool):
    """`build()`'s model compiled by `compile(model)`, or with `reuse` the kept one of the same key reset to the
    state those would give it, with `learning_rate`."""
    import tf_keras as keras

    key = _key(cfg, keras.mixed_precision.global_policy().name, optimizer)
    if reuse and _KEPT and _KEPT[0].key == key:
        kept = _KEPT[0]
        kept.model.set_weights(kept.weights)
        for generator, state in kept.generators:
            generator.state.assign(state)
        _reset_optimizer(kept.model.optimizer, kept.loss_scale, learning_rate)
        kept.model.reset_metrics()
        return kept.model
    forget()
    model = build()
    generators = layer_generators(model)
    compile(model)
    if reuse:
        _KEPT.append(_Kept(key, model, model.get_weights(), generators, loss_scale_variables(model.optimizer)))
    return model


def inference(model):
    """For a kept model, its forward pass in inference mode traced once and kept with it, so that scoring a
    trial's validation split each epoch does not run the network op by op; None for any other model (called
    directly: a model used once gains nothing from a trace). It takes float32 batches of any size (the batch
    dimension is left open in the trace), so the last, shorter batch neither traces again nor needs padding."""
    if not (_KEPT and _KEPT[0].model is model):
        return None
    kept = _KEPT[0]
    if kept.forward is None:
        import tensorflow as tf

        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        kept.forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return kept.forward


def forget() -> None:
    """Drop the kept model (replaced by another, or in a test), which `keras_state.release` froze out of the
    collector's way: its graphs hold reference cycles that only a collection frees."""
    from pipelines.training import keras_state

    if _KEPT:
        _KEPT.clear()
        keras_state.thaw()
