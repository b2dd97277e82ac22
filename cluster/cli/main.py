"""The `painsearch` command line: parse, validate, run; a user's mistake is one sentence, not a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import pipelines.bootstrap  # noqa: F401  (before TensorFlow is imported anywhere)
import cluster.local  # noqa: F401  (before anything imports Ray: a local cluster stays on 127.0.0.1)
from cluster.cli import analyze, data, demo, export, gpu_check, models, predict, raters, search
from pipelines.errors import PainsearchError
from pipelines.private import private_folder, private_root

COMMANDS = (data, models, search, analyze, predict, export, raters, demo, gpu_check)  # each adds its own subcommand


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line reported like every other: one sentence, exit 2."""

    def error(self, message: str):
        sys.stderr.write(f"painsearch: error: {message} (in `{self.prog}`); see `{self.prog} --help`.\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="painsearch",
        description="Pain detection in face images at cluster scale: phantom data, preprocessing to Parquet "
        "shards, the ten networks of the study, the Ray Tune study over them, and its report. The terminal shows "
        "painsearch's own progress and messages (--quiet, anywhere on the line: only warnings and the result); "
        "--verbose (anywhere on the line) brings back Ray's and TensorFlow's messages, which otherwise stay in "
        "Ray's log files.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return p


NATIVE_LOG = private_root() / "native.log"


def native_output_to_log() -> None:
    """What C++ code and the libraries print (TensorFlow's and Ray's notices, library warnings) goes to NATIVE_LOG;
    what painsearch prints (progress, the one-sentence errors) stays on the terminal. Both libraries write to file
    descriptor 2 from C++, below anything Python's logging controls, so that descriptor is what moves; Python's
    `sys.stderr` keeps the terminal. Child processes (a local Ray's) inherit the log."""
    import warnings

    private_folder(NATIVE_LOG.parent, "its native log")
    try:  # never through a link: one planted there would receive the log
        log = os.open(NATIVE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise PainsearchError(f"{NATIVE_LOG} cannot be opened as painsearch's own log ({exc.strerror}: a link or "
                              f"another user's file); remove it, or set TMPDIR to a folder of your own.") from exc
    sys.stderr.flush()
    terminal = os.dup(2)
    os.dup2(log, 2)
    os.close(log)
    sys.stderr = os.fdopen(terminal, "w", buffering=1)
    stream = os.fdopen(os.dup(2), "a", buffering=1)  # the same file, already opened safely (for the process's life)
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: stream.write(
        warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; in-process callers (tests, notebooks) keep their own stderr and Ray's own output."""
    from pipelines.progress import show_messages

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args([a for a in argv if a not in ("--verbose", "--quiet")])
    show_messages(quiet="--quiet" in argv)
    try:
        return args.fn(args)
    except PainsearchError as exc:
        print(f"painsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("painsearch: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130


def program() -> None:
    """The `painsearch` command: the terminal shows painsearch's own lines unless --verbose is anywhere on the line."""
    cluster.local.VERBOSE = "--verbose" in sys.argv[1:]
    if not cluster.local.VERBOSE:
        try:
            native_output_to_log()
        except PainsearchError as exc:
            print(f"painsearch: error: {exc}", file=sys.stderr)
            sys.exit(2)
    sys.exit(main())


if __name__ == "__main__":
    program()
