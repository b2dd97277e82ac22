"""Early stopping across trials: ASHA stops a search's weaker trials at epoch rungs.

Within one run, patience stops training once the validation metric stops improving
(`pipelines.training.early_stopping`); a trial is ranked by its best epoch either way.
"""

from __future__ import annotations

from search.config import StudyConfig


def scheduler(cfg: StudyConfig, max_epochs: int):
    """ASHA on the epochs a trial has trained (`epochs_done`, which a trial restarted from its checkpoint
    continues), or no early stopping (`search.scheduler: none`)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if cfg.search.scheduler == "none" or max_epochs <= 1:
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epochs_done", max_t=max_epochs,
                         grace_period=min(cfg.search.grace_period, max_epochs), reduction_factor=cfg.search.reduction_factor)
