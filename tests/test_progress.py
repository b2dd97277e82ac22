"""Long stages show how far they are and the time left: a bar redrawn in place on a terminal, a line at most every
few seconds (and at the end) in a log."""

from __future__ import annotations

import io
import re

from pipelines.progress import Progress, time_left


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_redrawn_with_the_time_left():
    screen = Terminal()
    bar = Progress("prepare", 4, "chunks", log=lambda m: None, stream=screen)
    for done in range(1, 5):
        bar.update(done)
    frames = screen.getvalue().split("\r")[1:]
    assert len(frames) == 4 and frames[-1].endswith("\n") and not any(f.endswith("\n") for f in frames[:-1])
    assert re.fullmatch(r"prepare \[#{6}\.{18}\] 1/4 chunks, \d+ s so far, about \d+ s left", frames[0])
    assert re.fullmatch(r"prepare \[#{24}\] 4/4 chunks, \d+ s so far\n", frames[-1])


def test_in_a_log_a_line_at_most_every_few_seconds_and_at_the_end():
    lines: list[str] = []
    bar = Progress("analyze: LIME", 50, "searches explained", log=lines.append, stream=io.StringIO(), every_s=3600)
    for done in range(1, 51):
        bar.update(done)
    assert len(lines) == 2 and lines[0].endswith("left") and lines[1].startswith("analyze: LIME [####")
    assert "50/50 searches explained" in lines[1]


def test_time_left_counts_only_what_this_run_did():
    assert time_left(5, 10, 20.0, first=3) == "20 s so far, about 50 s left"  # 2 done here in 20 s, 5 to go
    assert time_left(3, 10, 0.0, first=3) == "0 s so far"  # nothing done yet: no guess
    assert time_left(10, 10, 30.0) == "30 s so far"
