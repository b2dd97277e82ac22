"""The search space, defined once: learning rate (log), epochs, fine-tuning depth, with model-aware defaults.

Defaults follow DESIGN.md: learning rate log-uniform within a decade either side of the reference
code's rate (inside 1e-5..1e-2), epochs up to 50, and the frozen share of a pretrained backbone
in 0..1. Networks trained from scratch, or built without pretrained weights, have nothing to
freeze, so they get no `finetune_depth` axis. A config's `study.search.space` narrows any bound, and
`study.search.space_by_model.<network>` any bound of one network (networks differ in the rates they
train at).
"""

from __future__ import annotations

from dataclasses import dataclass

from search.config import SpaceConfig

LR_LIMITS = (1e-5, 1e-2)
MAX_EPOCHS = 50


@dataclass(frozen=True)
class Space:
    learning_rate: tuple[float, float]
    epochs: tuple[int, int]
    finetune_depth: tuple[float, float] | None  # None: not searched (held at 0)

    def tune(self) -> dict:
        """The Ray Tune param space."""
        from ray import tune

        out = {"learning_rate": tune.loguniform(*self.learning_rate),
               "epochs": tune.randint(self.epochs[0], self.epochs[1] + 1) if self.epochs[1] > self.epochs[0] else self.epochs[0]}
        if self.finetune_depth is not None:
            out["finetune_depth"] = tune.uniform(*self.finetune_depth)
        return out

    @property
    def max_epochs(self) -> int:
        return self.epochs[1]


def default_space(model: str, pretrained_weights: bool) -> Space:
    from pipelines.models import get_spec

    spec = get_spec(model)
    lr = (max(LR_LIMITS[0], spec.learning_rate / 10), min(LR_LIMITS[1], spec.learning_rate * 10))
    depth = (0.0, 1.0) if spec.pretrained and pretrained_weights else None
    return Space(learning_rate=lr, epochs=(max(1, MAX_EPOCHS // 5), MAX_EPOCHS), finetune_depth=depth)


def space_for(model: str, pretrained_weights: bool, override: SpaceConfig, for_model: SpaceConfig | None = None) -> Space:
    """The default space of `model`, with the config's bounds in place of the defaults: a bound of
    `search.space_by_model.<model>` (`for_model`) first, then one of `search.space`."""
    base = default_space(model, pretrained_weights)
    mine = for_model or SpaceConfig()
    lr = mine.learning_rate or override.learning_rate or base.learning_rate
    epochs = mine.epochs or override.epochs or base.epochs
    depth = base.finetune_depth and (mine.finetune_depth or override.finetune_depth or base.finetune_depth)
    return Space(learning_rate=tuple(lr), epochs=tuple(epochs), finetune_depth=tuple(depth) if depth else None)
