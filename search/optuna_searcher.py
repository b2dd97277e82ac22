"""The searcher of every search: Ray Tune's `OptunaSearch`, able to go on when Optuna's journal is ahead of Tune.

Tune saves its experiment state (which trials ended) at most every `SNAPSHOT_PERIOD_S`, while Optuna's journal
records a trial's end at once. A driver killed between the two leaves a trial the journal has closed and Tune's
state has running; the resumed search runs it again from its checkpoint, and Optuna refuses its intermediate
results (`UpdateFinishedTrialError`), which would stop the search at every resume. Optuna keeps the score it
recorded; Tune and the results store get the rerun's epochs as usual.
"""

from __future__ import annotations

from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search.optuna import OptunaSearch


class ResumableOptunaSearch(OptunaSearch):
    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass  # a trial the journal closed before the kill: its score there stands
