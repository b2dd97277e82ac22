"""The `painsearch` command line: parse, validate, run; a user's mistake is one sentence, not a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pipelines.bootstrap  # noqa: F401  (before TensorFlow is imported anywhere)
import cluster.local  # noqa: F401  (before anything imports Ray: a local cluster stays on 127.0.0.1)
from cluster.cli import analyze, data, demo, export, models, predict, raters, search
from pipelines.errors import PainsearchError

COMMANDS = (data, models, search, analyze, predict, export, raters, demo)  # each adds its own subcommand


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line reported like every other: one sentence, exit 2."""

    def error(self, message: str):
        sys.stderr.write(f"painsearch: error: {message} (in `{self.prog}`); see `{self.prog} --help`.\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="painsearch",
        description="Pain detection in face images at cluster scale: phantom data, preprocessing to Parquet "
        "shards, the ten networks of the study, the Ray Tune study over them, and its report.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except PainsearchError as exc:
        print(f"painsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("painsearch: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
