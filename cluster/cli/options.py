"""Command-line options whose default and help come from a typed config field: each default defined once."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def default(model: type[BaseModel], field: str) -> Any:
    return model.model_fields[field].default


def help_for(model: type[BaseModel], field: str, text: str | None = None) -> str:
    """`text` (else the field's description) with the field's default, as argparse prints it."""
    info = model.model_fields[field]
    words = (text or info.description or field).replace("%", "%%")
    return f"{words} (default {info.default})"
