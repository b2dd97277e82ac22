"""Long stages show how far they are and the time left: a bar redrawn in place on a terminal, a line at most every
few seconds (and at the end) in a log."""

from __future__ import annotations

import io
import os
import re
import sys

from pipelines.progress import MESSAGES, Progress, say, show_messages, time_left


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_redrawn_and_a_message_never_glues_onto_it(monkeypatch):
    """tqdm redraws the bar in place on the terminal (standard error); a message said meanwhile (standard output)
    comes after the bar is wiped, on a line of its own, and the bar is drawn again below it."""
    err, out = Terminal(), Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    show_messages()
    bar = Progress("prepare", 4, "chunks")
    bar.update(1)
    say("search: a message")
    for done in range(2, 5):
        bar.update(done)
    assert out.getvalue() == "search: a message\n"
    frames = err.getvalue().split("\r")
    drawn = [f for f in frames if f.strip()]
    assert re.fullmatch(r"prepare \[\.{24}\] 0/4 chunks, \d+ s so far", drawn[0])
    assert re.fullmatch(r"prepare \[#{6}\.{18}\] 1/4 chunks, \d+ s so far, about \d+ s left", drawn[1])
    wiped = frames.index(drawn[1]) + 1
    assert frames[wiped].strip() == "" and len(frames[wiped]) >= len(drawn[1])  # the bar wiped before the message
    assert re.fullmatch(r"prepare \[#{24}\] 4/4 chunks, \d+ s so far\n", drawn[-1])
    assert err.getvalue().count("\n") == 1  # one line in the end, redrawn in place


def test_quiet_keeps_only_warnings(monkeypatch, capsys):
    show_messages(quiet=True)
    say("prepare: 10 rows")
    MESSAGES.warning("a warning")
    assert capsys.readouterr().out == "a warning\n"
    show_messages()
    say("prepare: 10 rows")
    assert capsys.readouterr().out == "prepare: 10 rows\n"


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


def test_a_bar_with_nothing_left_is_not_drawn_again_under_later_messages(monkeypatch):
    err, out = Terminal(), Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    show_messages()
    Progress("prepare", 3, "chunks", first=3)  # a rerun with every chunk done
    drawn = err.getvalue()
    say("prepare: 12 rows")
    bar = Progress("search: trials", 4, "trials")
    bar.update(2)
    bar.close()  # a study that ended short of its total
    after = err.getvalue()
    say("search: done")
    assert err.getvalue() == after and out.getvalue() == "prepare: 12 rows\nsearch: done\n"
    assert drawn.count("\n") == 1 and re.search(r"3/3 chunks, \d+ s so far\n$", drawn)


def test_a_message_reaches_a_pipe_at_once():
    """A job's log is a pipe or a file, where output is buffered: each message line is flushed as it is said, so a
    user watching the log sees it then, not when the process ends."""
    import subprocess
    import threading

    code = ("import time; from pipelines.progress import say, show_messages; show_messages(); "
            "say('prepare: started'); time.sleep(60)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a job's process has it
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=30)
    proc.kill()
    proc.wait()
    assert lines == ["prepare: started\n"]
