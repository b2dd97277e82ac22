"""The searcher of every search: Ray Tune's `OptunaSearch`, able to go on from Optuna's journal whatever Tune's
last snapshot of it holds.

Tune saves its experiment state (which trials ended) and its searcher at most every `SNAPSHOT_PERIOD_S`, while
Optuna's journal records each trial at once. A resumed search therefore meets two gaps:
- a trial the journal has closed and Tune's state has running (the driver was killed between the two): Tune runs
  it again from its checkpoint and Optuna refuses its results (`UpdateFinishedTrialError`), which would stop the
  search at every resume. Optuna keeps the score it recorded; Tune and the results store get the rerun's epochs.
- no searcher in Tune's snapshot (a kill or a storage outage cut the snapshot's upload between its files; Tune
  would then start the search afresh beside the trials it restored, and wait for good): the searcher is rebuilt
  from the search space (`search.tuner` passes it on restore) and the journal, and a trial Tune goes on with is
  found in the journal by its parameters.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from pipelines.ray_compat import optuna_search_parts
from search.optuna_compat import trial_of


log = logging.getLogger(__name__)


class ResumableOptunaSearch(OptunaSearch):
    def restore_from_dir(self, checkpoint_dir: str) -> None:
        space = optuna_search_parts(self)[0]
        if glob.glob(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format("*"))) or not space:
            super().restore_from_dir(checkpoint_dir)
        else:
            log.warning("Tune's snapshot holds no searcher: the search goes on from its Optuna journal")

    def _knows(self, trial_id: str, result: dict[str, Any] | None) -> bool:
        """Whether Optuna holds this Tune trial, looking it up in the journal by its parameters if the searcher
        was rebuilt without Tune's snapshot of it."""
        _, trials, study, _ = optuna_search_parts(self)
        if trial_id in trials:
            return True
        result = result or {}  # Tune passes results flattened: the trial's parameters as `config/<name>`
        taken = {t.number for t in trials.values()}
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            params = frozen.params  # none when nothing is searched: then nothing tells the trials apart
            if params and frozen.number not in taken and all(result.get(f"config/{k}") == v for k, v in params.items()):
                trials[trial_id] = trial_of(study, frozen)
                return True
        return False

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if not self._knows(trial_id, result):
            return  # a trial the journal closed before Tune's snapshot lost the searcher: its score there stands
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass  # a trial the journal closed before the kill: its score there stands

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if not self._knows(trial_id, result):
            optuna_search_parts(self)[3].add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)
