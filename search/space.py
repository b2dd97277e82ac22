"""The search space, defined once: its axes (learning rate, epochs, fine-tuning depth), their default
ranges, the paper's own settings, and the bounds a config may set. Adding an axis touches this file only.

Defaults follow docs/study.md and hold the paper's settings strictly inside (docs/networks.md:
learning rate 1e-3 of 1e-2, 1e-3, 1e-4 tried; 30 epochs; nothing frozen): learning rate log-uniform in
1e-5..1e-2, epochs 10..50, and the frozen share of a pretrained backbone on a grid of tenths in 0..1, so
that 0 (the paper's choice) and 1 (head only) are reachable values. Networks trained from scratch, or
built without pretrained weights, have nothing to freeze and get no `finetune_depth` axis.
`study.search.space` narrows any bound; `study.search.space_by_model.<network>` any bound of one network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from pipelines.config import Strict


@dataclass(frozen=True)
class Axis:
    name: str
    kind: Literal["log", "int", "grid"]  # log-uniform float, integer, float on a grid of `step`
    default: tuple[float, float]
    limits: tuple[float, float]  # what a config's bounds must stay within
    paper: float  # the paper's setting, listed beside the chosen one in the report
    description: str
    step: float | None = None
    needs_pretrained_weights: bool = False

    def cast(self, value: Any) -> float | int:
        return int(value) if self.kind == "int" else float(value)

    def check(self, bounds: tuple[float, float]) -> str | None:
        """None when `bounds` are usable, else what is wrong (for the config's one-sentence error)."""
        lo, hi = bounds
        given = f"has {self.name} {[self.cast(lo), self.cast(hi)]}; give [low, high]"
        floor, ceiling = self.limits
        # a log-uniform axis cannot start at its floor (0)
        if (lo > floor if self.kind == "log" else lo >= floor) and lo <= hi <= ceiling:
            return None
        return f"{given} with {floor:g} {'<' if self.kind == 'log' else '<='} low <= high <= {ceiling:g}"

    def tune(self, bounds: tuple[float, float]):
        """This axis as a Ray Tune domain (OptunaSearch turns it into the matching Optuna distribution)."""
        from ray import tune

        lo, hi = bounds
        if lo == hi:
            return self.cast(lo)
        if self.kind == "log":
            return tune.loguniform(lo, hi)
        if self.kind == "int":
            return tune.randint(int(lo), int(hi) + 1)
        return tune.quniform(lo, hi, self.step)


AXES: tuple[Axis, ...] = (
    Axis("learning_rate", "log", (1e-5, 1e-2), (0.0, 1.0), 1e-3, "log-uniform range"),
    Axis("epochs", "int", (10, 50), (1, 500), 30, "integer range; ASHA's max_t is its upper end"),
    Axis("finetune_depth", "grid", (0.0, 1.0), (0.0, 1.0), 0.0, "fraction of the pretrained backbone frozen, in tenths",
         step=0.1, needs_pretrained_weights=True),
)
AXIS = {a.name: a for a in AXES}
PAPER = {a.name: a.paper for a in AXES}


class _Bounds(Strict):
    @model_validator(mode="after")
    def _check(self):
        for axis in AXES:
            bounds = getattr(self, axis.name)
            problem = bounds is not None and axis.check(bounds)
            if problem:
                raise ValueError(problem)
        return self


# The bounds a config may give, one optional [low, high] per axis (`search.space`, `search.space_by_model.*`).
SpaceConfig = create_model(
    "SpaceConfig", __base__=_Bounds, __doc__="Bounds of the search space; a bound left out takes the default.",
    **{a.name: (tuple[float, float] | None, Field(None, description=a.description)) for a in AXES},
)


@dataclass(frozen=True)
class Space:
    bounds: dict[str, tuple[float, float]]  # axis name -> [low, high]; an axis left out is not searched

    def tune(self) -> dict:
        """The Ray Tune param space."""
        return {name: AXIS[name].tune(b) for name, b in self.bounds.items()}

    @property
    def max_epochs(self) -> int:
        return int(self.bounds["epochs"][1])

    def __getattr__(self, name: str):  # space.learning_rate, space.epochs, ...: None when not searched
        if name in AXIS:
            return self.bounds.get(name)
        raise AttributeError(name)


def default_space(model: str, pretrained_weights: bool) -> Space:
    from pipelines.models import get_spec

    frozen_possible = get_spec(model).pretrained and pretrained_weights
    return Space({a.name: a.default for a in AXES if frozen_possible or not a.needs_pretrained_weights})


def space_for(model: str, pretrained_weights: bool, override: Any, for_model: Any = None) -> Space:
    """The default space of `model`, with the config's bounds in place of the defaults: a bound of
    `search.space_by_model.<model>` (`for_model`) first, then one of `search.space` (`override`)."""
    base = default_space(model, pretrained_weights)
    mine = for_model or SpaceConfig()
    return Space({name: tuple(getattr(mine, name) or getattr(override, name) or b) for name, b in base.bounds.items()})


def params_of(row: dict[str, Any]) -> dict[str, float | int]:
    """The searched settings in a trial's config or row, each cast to its type."""
    return {a.name: a.cast(row[a.name]) for a in AXES if row.get(a.name) is not None and not _isnan(row[a.name])}


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
