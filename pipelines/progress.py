"""Progress of a long stage (prepare's chunks, the study's trials, LIME's searches, predict's inputs) with the time
left, and painsearch's own message lines.

On a terminal, a tqdm bar redrawn in place: `prepare [#######.......] 12/40 chunks, 30 s so far, about 70 s
left`. Anywhere else (a job's log, a pipe) the same text as a line of its own at most every `every_s` seconds,
and at the end, so logs stay short.

Messages (`say`) go through the `painsearch` logger where logging is set up, so a program turns them up or down
as it does any library's (`logging.getLogger("painsearch").setLevel(...)`), and are printed where it is not (a
notebook); the command line shows them on standard output (`show_messages`; `--quiet` keeps only warnings),
written by tqdm so that a bar on the terminal is cleared before the line and drawn again after it, never glued
to it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 24
MESSAGES = logging.getLogger("painsearch")


def say(message: str) -> None:
    """One of painsearch's own message lines (what a stage is doing, what it wrote). Where nothing handles logging
    (a notebook, a script that set none up) it is printed, as it would be on the command line."""
    if MESSAGES.hasHandlers():
        MESSAGES.info(message)
    else:
        print(message, flush=True)


class _BarSafe(logging.Handler):
    """Each record as one line on standard output (the one current at the time: a test's capture too), written by
    tqdm so that a progress bar on the terminal is cleared and redrawn around it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()  # a job's log or a pipe shows the line now, not when the process ends
        except Exception:  # noqa: BLE001  (logging's own contract: a message that cannot be shown is not an error)
            self.handleError(record)


def show_messages(quiet: bool = False) -> None:
    """Show painsearch's messages on standard output, plain (the command line's choice; once per process)."""
    for handler in [h for h in MESSAGES.handlers if isinstance(h, _BarSafe)]:
        MESSAGES.removeHandler(handler)
    handler = _BarSafe()
    handler.setFormatter(logging.Formatter("%(message)s"))
    MESSAGES.addHandler(handler)
    MESSAGES.setLevel(logging.WARNING if quiet else logging.INFO)
    MESSAGES.propagate = False


def time_left(done: int, total: int, seconds: float, first: int = 0) -> str:
    """`12 s so far, about 30 s left`: the time left if the units still to do take as long as those done here
    (`first` units were done before this run began, and took none of its time)."""
    ran = done - first
    left = seconds / ran * (total - done) if ran > 0 else float("nan")
    return f"{seconds:.0f} s so far" + (f", about {left:.0f} s left" if ran > 0 and total > done else "")


class Progress:
    def __init__(self, stage: str, total: int, unit: str, log: Callable[[str], None] = say,
                 stream: TextIO | None = None, every_s: float = 10.0, first: int = 0,
                 started: float | None = None) -> None:
        self.stage, self.total, self.unit, self.log, self.first = stage, total, unit, log, first
        self.stream = stream if stream is not None else sys.stderr
        self.every_s, self.started, self.shown = every_s, started or time.time(), 0.0
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            # the bar's text is this module's own (`text`): the same words on a terminal as in a log
            self.bar = tqdm(total=total, initial=first, file=self.stream, bar_format="{desc}", leave=True,
                            dynamic_ncols=True)
            self.bar.set_description_str(self.text(first))
            if first >= total:  # nothing left to do: the bar stays as it is, and is not drawn again under messages
                self.close()

    def text(self, done: int) -> str:
        filled = int(WIDTH * done / max(self.total, 1))
        return (f"{self.stage} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{self.total} {self.unit}, "
                f"{time_left(done, self.total, time.time() - self.started, self.first)}")

    def update(self, done: int) -> None:
        now, end = time.time(), done >= self.total
        if self.bar is not None:
            if self.bar.disable:  # closed
                return
            self.bar.n = done
            self.bar.set_description_str(self.text(done))  # redraws the bar
            if end:
                self.close()
        elif end or now - self.shown >= self.every_s:
            self.log(self.text(done))
            self.shown = now

    def close(self) -> None:
        """Leave the bar as it stands (a stage that ends short of its total: a time budget, a failure), so that it
        is not drawn again under later messages."""
        if self.bar is not None and not self.bar.disable:
            self.bar.close()
