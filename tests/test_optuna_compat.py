"""Every private Optuna name painsearch relies on still works (search/optuna_compat.py)."""

from __future__ import annotations

import pytest

from search import optuna_compat


@pytest.mark.parametrize("name", sorted(optuna_compat.ALL))
def test_each_private_optuna_name_still_works(name):
    import optuna

    if name != "trial_of":
        pytest.fail(f"{name} has no check here")
    study = optuna.create_study(direction="maximize")
    asked = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    (frozen,) = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    try:
        live = optuna_compat.trial_of(study, frozen)
    except AttributeError as exc:
        pytest.fail(f"optuna_compat.trial_of: {exc}; find where this Optuna version keeps a frozen trial's storage "
                    f"id and update search/optuna_compat.py")
    assert live.number == asked.number
    study.tell(live, 0.5)  # the live trial is the running one: telling it closes that trial
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE and study.best_value == 0.5
