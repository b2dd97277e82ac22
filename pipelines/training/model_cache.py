"""A built model kept for the next trial of the same network in a long-lived process (an inline trial's reused
Tune actor), handed out in the state a fresh build would have.

Building and compiling a network costs a trial as much as a short epoch of the smoke study (timm and
keras.applications build once and re-initialise as well). A trial of the same network, size, depth and seed gets
the kept model back with what a fresh build would give it: the initial weights (those of the first build, made
after the same `set_random_seed`), the initial states of its random layers' generators (augmentation), a new
optimizer and metrics (`compile`, which also makes Keras trace the train step again, so dropout's seeded ops
start over as in a fresh trace). A trial on a reused actor trains as it would on a fresh one
(tests/test_train.py). One model is kept: a trial of another network replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.config import TrainConfig


@dataclass
class _Kept:
    key: tuple
    model: Any
    weights: list
    generators: list  # (tf.random.Generator, its state right after the build)


_KEPT: list[_Kept] = []


def _key(cfg: TrainConfig, policy: str) -> tuple:
    """What the built model depends on (the learning rate, epochs and optimizer do not: `compile` sets them)."""
    return (cfg.model, cfg.n_classes, cfg.size, cfg.weights, cfg.weights_dir, cfg.finetune_depth, cfg.preprocessing,
            cfg.augment, cfg.seed, policy)


def _generators(model) -> list:
    """The random layers' generators, created now (tf-keras makes them at the first call) so that their initial
    states can be kept. tf-keras internals: the one place painsearch reads them."""
    found = []
    for layer in model.submodules:
        rng = getattr(layer, "_random_generator", None)
        if rng is not None and hasattr(rng, "_maybe_init"):
            rng._maybe_init()
            if getattr(rng, "_generator", None) is not None:
                found.append((rng._generator, rng._generator.state.numpy()))
    return found


def built_model(cfg: TrainConfig, build, reuse: bool):
    """`build()`'s model, or with `reuse` the kept one of the same key reset to the state `build()` would give."""
    import tf_keras as keras

    key = _key(cfg, keras.mixed_precision.global_policy().name)
    if reuse and _KEPT and _KEPT[0].key == key:
        kept = _KEPT[0]
        # the last trial's traced steps go through Keras's attribute tracking, which `compile` bypasses when it
        # resets them, so that the model's reference counts would keep every trial's traced graphs alive
        for name in ("train_function", "test_function", "predict_function", "train_tf_function"):
            setattr(kept.model, name, None)
        kept.model.set_weights(kept.weights)
        for generator, state in kept.generators:
            generator.state.assign(state)
        return kept.model
    model = build()
    generators = _generators(model)
    _KEPT.clear()
    if reuse:
        _KEPT.append(_Kept(key, model, model.get_weights(), generators))
    return model


def forget() -> None:
    """Drop the kept model (a test, or a process that trains no more)."""
    _KEPT.clear()
