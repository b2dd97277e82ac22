"""Every private Optuna name painsearch relies on, in one place (checked against Optuna 4).

`tests/test_optuna_compat.py` runs each one and fails with a sentence naming what moved when an upgrade breaks
it. Nothing else in painsearch reads a private Optuna attribute (Tune's `OptunaSearch` is Ray's:
`pipelines.ray_compat`).
"""

from __future__ import annotations

from typing import Any


def trial_of(study, frozen) -> Any:
    """A live `optuna.trial.Trial` of `study` for one of its running trials as `study.get_trials` lists it: Optuna
    names a trial to its storage by an id that only the frozen trial's private field holds."""
    from optuna.trial import Trial

    return Trial(study, frozen._trial_id)


# name -> what it reads, for the test that checks every one still works
ALL = {"trial_of": trial_of}
