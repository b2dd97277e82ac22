"""The GPU path under op determinism, checked where there is no GPU: every graph painsearch runs on a card (each
network's training step with the augmentation, a frozen part and mixed precision; its inference pass, which
validation, test scoring and LIME call; the exported serving function) holds only ops whose GPU kernels run
under `enable_op_determinism` (`pipelines.training.determinism`)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.bootstrap import tensorflow
from pipelines.config import TrainConfig
from pipelines.models.specs import MODELS
from pipelines.training import determinism

tf = tensorflow()
import tf_keras as keras  # noqa: E402


@pytest.fixture
def policy():
    """Each test sets Keras's global dtype policy; this puts float32 back after it."""
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()


def train_step(model, size: int):
    """The step Keras's `fit` runs each batch (class weights reach it as sample weights), traced."""
    images = tf.TensorSpec((None, size, size, 3), tf.float32)
    step = tf.function(lambda x, y, w: model.train_step((x, y, w)))
    return step.get_concrete_function(images, tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.float32))


def inference_pass(model, size: int | None):
    images = tf.TensorSpec((None, size, size, 3), tf.float32)
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(images)


def compiled(name: str, size: int, depth: float):
    from pipelines.training.loop import compile_model

    cfg = TrainConfig(model=name, size=size, finetune_depth=depth, weights="none", augment=True)
    keras.utils.set_random_seed(cfg.seed)  # as the loop does: under determinism a random op needs a seed
    return compile_model(cfg, tf.distribute.get_strategy())


def paper_shape(name: str) -> tuple[int, float]:
    """A small input the network accepts, and a depth strictly between 0 and 1 where it has a backbone."""
    spec = MODELS[name]
    return max(spec.min_size, 32), 0.5 if spec.pretrained else 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_every_network_runs_only_deterministic_gpu_kernels(name, policy):
    from analysis.export import wrap

    determinism.apply(True)
    policy("mixed_float16")  # what `mixed_precision: auto` turns on with a GPU
    size, depth = paper_shape(name)
    model = compiled(name, size, depth)
    if depth:
        assert any(not layer.trainable for layer in model.get_layer(index=-3).layers)  # the backbone is partly frozen
    found = {"train step": determinism.rejected(train_step(model, size)),
             "inference pass": determinism.rejected(inference_pass(model, size)),
             "exported model": determinism.rejected(inference_pass(wrap(model, size), None))}
    assert not any(found.values()), {k: [str(f) for f in v] for k, v in found.items()}


def test_the_check_refuses_the_stock_random_contrast(policy, monkeypatch):
    """Keras's own RandomContrast (the augmentation before `Contrast`) would stop the first training step on a
    GPU: the check finds its AdjustContrastv2."""
    from tf_keras import layers

    import pipelines.models.build as build

    determinism.apply(True)
    monkeypatch.setattr(build, "Contrast", layers.RandomContrast)
    model = compiled("weinet", 32, 0.0)
    found = determinism.rejected(train_step(model, 32))
    assert [f.op for f in found] == ["AdjustContrastv2"], [str(f) for f in found]
    monkeypatch.undo()
    keras.backend.clear_session()
    assert determinism.rejected(train_step(compiled("weinet", 32, 0.0), 32)) == []


def test_a_gradient_through_a_frozen_batch_norm_is_refused_and_a_pruned_one_is_not(policy):
    """The fused batch-norm gradient is refused only with training disabled (an attribute, not the op's name), and
    only where the step's outputs need it: below the first trainable layer TensorFlow prunes it."""
    from tf_keras import layers

    determinism.apply(True)

    def step(frozen_on_top: bool):
        inputs = keras.Input((8, 8, 3))
        conv = layers.Conv2D(4, 3, name="conv")
        norm = layers.BatchNormalization(name="norm")
        x = norm(conv(inputs)) if frozen_on_top else conv(norm(inputs))
        model = keras.Model(inputs, layers.Dense(2, activation="softmax")(layers.Flatten()(x)))
        norm.trainable = False  # a frozen BatchNormalization runs in inference mode in tf-keras
        model.compile(keras.optimizers.SGD(), keras.losses.SparseCategoricalCrossentropy())
        return train_step(model, 8)

    above = determinism.rejected(step(frozen_on_top=True))
    assert [f.op for f in above] == ["FusedBatchNormGradV3"], [str(f) for f in above]
    below = step(frozen_on_top=False)  # the gradient node is in the graph, and nothing needs it
    nodes = below.graph.as_graph_def()
    everywhere = [n for n in nodes.node] + [n for f in nodes.library.function for n in f.node_def]
    assert any(n.op == "FusedBatchNormGradV3" for n in everywhere)
    assert determinism.rejected(below) == []


def test_contrast_draws_and_computes_what_keras_random_contrast_does():
    from tf_keras import layers

    from pipelines.models.build import Contrast

    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    ours, stock = Contrast(0.1, seed=7), layers.RandomContrast(0.1, seed=7)
    for _ in range(3):  # the same sequence of factors from the same seed
        np.testing.assert_allclose(ours(images, training=True).numpy(), stock(images, training=True).numpy(),
                                   rtol=0, atol=1e-3)
    np.testing.assert_array_equal(ours(images, training=False).numpy(), images)
