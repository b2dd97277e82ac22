"""The two ways an input can be wrong: the user's mistake (`PainsearchError`) and one bad item (`Rejection`).

The CLI prints a `PainsearchError` as a single sentence and exits with status 2, without a traceback,
so every message says what was wrong, what was expected, and how to fix it. A `Rejection` concerns one
input of many (an image without a face, a corrupt file): its message is the reason listed in
`prepare_report.json` (or `predict`'s report), and the run goes on with the rest.
"""

from __future__ import annotations


class PainsearchError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""


class StoreUnreachable(PainsearchError):
    """A store (results or shards) that did not answer for as long as painsearch waits for one: an outage, not a
    fault of the work that was reading or writing, which can be run again once the store is back."""


class Rejection(Exception):
    """An input that cannot become a face image; the message is the reason in the report."""


def choices(valid: "list[str] | tuple[str, ...] | set[str]") -> str:
    """Format the valid choices for an error message."""
    return ", ".join(sorted(valid))
