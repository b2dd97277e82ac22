"""Every private TensorFlow and tf-keras name painsearch relies on still works (pipelines/tf_compat.py): an upgrade
that moves one fails here, with the name in the test's id and a sentence saying what moved, not in the middle of
a study."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines import tf_compat


def _model(mixed: bool = False):
    import tf_keras as keras

    from pipelines.bootstrap import tensorflow

    tf = tensorflow()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.RandomFlip("horizontal", seed=1)(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", dtype="float32")(x))
    optimizer = keras.optimizers.Adam(1e-3)
    if mixed:
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return tf, model


@pytest.mark.parametrize("name", sorted(tf_compat.ALL))
def test_each_private_tensorflow_name_still_works(name):
    def moved(what: str) -> str:
        return f"tf_compat.{name}: {what}; find where this TensorFlow or tf-keras version keeps it and update pipelines/tf_compat.py"

    try:
        if name == "gradient_registry":
            tf, _ = _model()
            before = set(tf_compat.gradient_registry())

            @tf.custom_gradient
            def double(x):
                return 2 * x, lambda dy: 2 * dy

            tf.function(lambda x: double(x)).get_concrete_function(tf.TensorSpec([], tf.float32))
            added = set(tf_compat.gradient_registry()) - before
            assert any(n.startswith("CustomGradient-") for n in added), moved("a custom gradient's trace added no name")
        elif name == "layer_generators":
            _, model = _model()
            found = tf_compat.layer_generators(model)
            assert len(found) == 1, moved(f"the random layer's generator was not found ({len(found)} found)")
            generator, state = found[0]
            assert np.array_equal(generator.state.numpy(), state), moved("the generator's state is not its own")
        elif name == "loss_scale_variables":
            _, plain = _model()
            assert tf_compat.loss_scale_variables(plain.optimizer) == []
            _, mixed = _model(mixed=True)
            found = tf_compat.loss_scale_variables(mixed.optimizer)
            assert len(found) == 2, moved(f"the loss scale and its good-step count were not found ({len(found)} found)")
        else:
            pytest.fail(f"{name} has no check here")
    except (AttributeError, ImportError, KeyError) as exc:
        pytest.fail(moved(f"{type(exc).__name__}: {exc}"))
