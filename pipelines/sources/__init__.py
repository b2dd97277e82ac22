"""Dataset adapters: each turns one source, as users receive it, into labelled `SourceRecord`s."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipelines.sources import cppain, manifest, mintpain, unbc
from pipelines.sources.base import Listing, Rejected, SourceRecord
from pipelines.errors import PainsearchError, choices

Adapter = Callable[..., Listing]

# The source kinds `data prepare` accepts, each a reader of its native layout.
ADAPTERS: dict[str, Adapter] = {
    "unbc": unbc.read,
    "mintpain": mintpain.read,
    "manifest": manifest.read,
    "cppain": cppain.read,
}


def read_source(kind: str, location: str | Path, allow_outside: bool = False) -> Listing:
    """The listing of one source; paths that lead out of its folder are refused unless `allow_outside`."""
    if kind not in ADAPTERS:
        raise PainsearchError(f"Unknown source kind {kind!r}; choose one of {choices(ADAPTERS)}.")
    return ADAPTERS[kind](location, flag=f"--{kind}", allow_outside=allow_outside)


__all__ = ["ADAPTERS", "Listing", "Rejected", "SourceRecord", "read_source"]
