"""Early stopping within a run: patience on the monitored validation metric, and the epoch that ranks the run.

The search stops whole trials early too (ASHA, across trials: `search.early_stopping`). Within a run,
`Patience` decides when to stop and remembers the best epoch: a trial is ranked by that epoch's
validation score, and that epoch's weights are what the test split is scored with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Patience:
    """`update` after each epoch; `stop` once `patience` epochs passed without improvement (0: never)."""

    monitor: str  # a validation metric without its `val_` prefix: f1_macro, accuracy, loss
    patience: int
    best: float | None = None  # the best score so far, sign-adjusted so that higher is better
    best_epoch: int = -1
    since_best: int = 0

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Take this epoch's validation metrics; True when it is a new best (ties keep the earlier epoch)."""
        score = (-1.0 if self.monitor == "loss" else 1.0) * float(metrics[f"val_{self.monitor}"])
        if self.best is None or score > self.best:
            self.best, self.best_epoch, self.since_best = score, epoch, 0
            return True
        self.since_best += 1
        return False

    @property
    def stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "since_best": self.since_best}

    @classmethod
    def restore(cls, monitor: str, patience: int, state: dict) -> Patience:
        return cls(monitor, patience, **{k: v for k, v in state.items() if k in asdict(cls(monitor, patience))})
