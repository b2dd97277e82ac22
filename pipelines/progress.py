"""Progress of a long stage (prepare's chunks, LIME's searches, predict's inputs) with the time left.

On a terminal, one line redrawn in place, as tqdm-style tools do: `prepare [#######.......] 12/40 chunks,
30 s, about 70 s left`. Anywhere else (a job's log, a pipe) the same text as a line of its own at most every
`every_s` seconds, and at the end, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 24


def time_left(done: int, total: int, seconds: float, first: int = 0) -> str:
    """`12 s so far, about 30 s left`: the time left if the units still to do take as long as those done here
    (`first` units were done before this run began, and took none of its time)."""
    ran = done - first
    left = seconds / ran * (total - done) if ran > 0 else float("nan")
    return f"{seconds:.0f} s so far" + (f", about {left:.0f} s left" if ran > 0 and total > done else "")


class Progress:
    def __init__(self, stage: str, total: int, unit: str, log: Callable[[str], None] = print,
                 stream: TextIO | None = None, every_s: float = 10.0, first: int = 0,
                 started: float | None = None) -> None:
        self.stage, self.total, self.unit, self.log, self.first = stage, total, unit, log, first
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every_s, self.started, self.shown = every_s, started or time.time(), 0.0

    def text(self, done: int) -> str:
        filled = int(WIDTH * done / max(self.total, 1))
        return (f"{self.stage} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{self.total} {self.unit}, "
                f"{time_left(done, self.total, time.time() - self.started, self.first)}")

    def update(self, done: int) -> None:
        now, end = time.time(), done >= self.total
        if self.tty:
            self.stream.write(f"\r{self.text(done)}" + ("\n" if end else ""))
            self.stream.flush()
        elif end or now - self.shown >= self.every_s:
            self.log(self.text(done))
            self.shown = now
