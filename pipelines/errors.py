"""The one exception type a user's mistake becomes.

The CLI prints its message as a single sentence and exits non-zero, without a traceback, so every
message says what was wrong, what was expected, and how to fix it.
"""

from __future__ import annotations


class PainsearchError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""


def choices(valid: "list[str] | tuple[str, ...] | set[str]") -> str:
    """Format the valid choices for an error message."""
    return ", ".join(sorted(valid))
