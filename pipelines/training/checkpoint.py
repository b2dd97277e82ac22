"""A run's checkpoint, one per epoch: the weights and the state a restarted run continues from.

Every epoch reports a checkpoint with `RANK`: the epoch's number when it is the run's best so far,
else -1. Runners keep the checkpoint of the highest rank (the best epoch) besides the latest one (both
Ray Train and Tune always keep the latest): the latest is where a restarted run continues, the best is
what ranked the trial and what scores the test split (`best_of`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.h5"
STATE_FILE = "state.json"
RANK = "checkpoint_rank"  # the score attribute runners keep checkpoints by


def save(model, directory: str | Path, epoch: int, patience_state: dict[str, Any]) -> None:
    directory = Path(directory)
    model.save_weights(str(directory / WEIGHTS_FILE))
    (directory / STATE_FILE).write_text(json.dumps({"epoch": epoch, **patience_state}))


def read_state(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / STATE_FILE).read_text())


def finished(state: dict[str, Any], epochs: int, monitor: str, patience: int) -> bool:
    """Whether a run restored from `state` has nothing left to train: its last epoch is done, or patience ran out."""
    from pipelines.training.early_stopping import Patience

    return int(state["epoch"]) + 1 >= epochs or Patience.restore(monitor, patience, state).stop


def rank(epoch: int, improved: bool) -> int:
    return epoch if improved else -1


def best_of(states: dict[str, dict[str, Any]]) -> tuple[str, int]:
    """Of a run's kept checkpoints ({name: state}), the one holding its best epoch, and that epoch.

    The latest state names the best epoch; exactly that epoch's checkpoint is chosen, never a later one."""
    if not states:
        raise ValueError("the run kept no checkpoint")
    latest = max(states.values(), key=lambda s: s["epoch"])
    best_epoch = int(latest["best_epoch"])
    for name, state in states.items():
        if int(state["epoch"]) == best_epoch:
            return name, best_epoch
    raise ValueError(f"the run kept no checkpoint of its best epoch {best_epoch} "
                     f"(kept epochs {sorted(int(s['epoch']) for s in states.values())})")
