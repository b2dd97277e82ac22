"""Write one benchmark's figures into BENCHMARKS.md between its markers, leaving the rest as it is."""

from __future__ import annotations

from pathlib import Path

HEADER = "# Benchmarks\n"


def write_block(target: Path, key: str, title: str, block: str) -> None:
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = target.read_text() if target.exists() else HEADER
    wrapped = f"{start}\n{block}\n{end}"
    if start in text:
        head, rest = text.split(start, 1)
        text = head + wrapped + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n{wrapped}\n"
    target.write_text(text)
