"""The model zoo. `specs` is the registry as data (no TensorFlow); `build` makes a model from a spec;
`scratch` holds the four from-scratch builders; `weights` finds ImageNet weights; `loader` rebuilds a
trained model from what its run recorded."""

from pipelines.models.specs import MODEL_NAMES, MODELS, PRETRAINED, ModelSpec, get_spec

__all__ = ["MODELS", "MODEL_NAMES", "PRETRAINED", "ModelSpec", "get_spec"]
