"""Write one benchmark's figures into BENCHMARKS.md between its markers, leaving the rest as it is."""

from __future__ import annotations

import os
import platform
import time
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


def machine(*extra: str) -> str:
    """The first line of every block: when, on what machine (and any versions that matter)."""
    parts = [f"{os.cpu_count()} cores", platform.machine(), f"Python {platform.python_version()}", *extra, "no GPU"]
    return f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'}: {', '.join(parts)}."


RESULTS = Path(__file__).resolve().parent / "results"


def save_results(name: str, data: dict) -> None:
    """A benchmark's measured figures as JSON (benchmarks/results/), for other scripts to build on."""
    import json

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"measured": time.strftime("%Y-%m-%d"), **data}, indent=1))


def load_results(name: str) -> dict:
    import json

    return json.loads((RESULTS / f"{name}.json").read_text())
