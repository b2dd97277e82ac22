"""The `painsearch` command line: `main` builds the parser from one module per command (data, models,
search, analyze, raters, demo); `options` draws defaults and help from the typed configs."""

from cluster.cli.main import build_parser, main, program
from cluster.cli.search import parse_sets

__all__ = ["build_parser", "main", "parse_sets", "program"]
