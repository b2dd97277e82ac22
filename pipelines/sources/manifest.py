"""A manifest CSV for any image set (Delaware, or a user's own): `path,subject,label` at least.

Optional columns: `level` (the source's own intensity; pain when above 0), `sequence`, `frame`,
`dataset` (default: the manifest's folder name, in lower case). Paths are relative to the manifest's folder.
Labels may be 0/1 or words: `pain`; `no pain`, `no_pain`, `neutral`, `none`.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from pipelines.sources.base import CP_PAIN, Listing, SourceRecord, is_image, leaves, outside_reason
from pipelines.errors import PainsearchError
from pipelines.labels import NO_PAIN, PAIN, binary_label

# A dataset's name becomes a folder of the shards and a key of the study's pool: a plain name, never a path. A
# manifest lists PAIN-DB faces; CP-PAIN's come only through its own adapter, with the raters' scores.
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
REQUIRED = ("path", "subject", "label")
OPTIONAL = ("level", "sequence", "frame", "dataset")
LABEL_WORDS = {"pain": PAIN, "1": PAIN, "no pain": NO_PAIN, "no_pain": NO_PAIN, "nopain": NO_PAIN,
               "neutral": NO_PAIN, "none": NO_PAIN, "0": NO_PAIN}


def parse_label(text: str) -> int:
    key = text.strip().lower()
    if key not in LABEL_WORDS:
        raise ValueError(f"label {text!r} is not one of {', '.join(sorted(LABEL_WORDS))}")
    return LABEL_WORDS[key]


def read(manifest: str | Path, flag: str = "--manifest", allow_outside: bool = False) -> Listing:
    manifest = Path(manifest)
    if not manifest.is_file():
        raise PainsearchError(
            f"{flag} {manifest} is not a file; expected a CSV with columns {', '.join(REQUIRED)} "
            f"(optional {', '.join(OPTIONAL)}); write one and pass its path."
        )
    base = manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [c.strip() for c in reader.fieldnames or []]
            rows = list(reader)
            columns = [c.strip() for c in (rows[0].keys() if rows else [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PainsearchError(f"{flag} {manifest} is not a readable CSV ({exc}); save it as UTF-8 CSV with a header row.") from exc
    twice = sorted({c for c in header if c and header.count(c) > 1})
    if twice:  # a reader of a mapping keeps the last of two same-named columns, silently
        raise PainsearchError(f"{flag} {manifest} has the column(s) {', '.join(twice)} more than once in its header; "
                              f"keep one of each.")
    missing = [c for c in REQUIRED if c not in columns]
    if not rows or missing:
        raise PainsearchError(
            f"{flag} {manifest} lacks the column(s) {', '.join(missing) or ', '.join(REQUIRED)} "
            f"(found: {', '.join(columns) or 'no rows'}); expected a header with {', '.join(REQUIRED)} "
            f"and optional {', '.join(OPTIONAL)}."
        )
    default_dataset = base.name.lower() or "manifest"  # dataset keys are lower case: /data/Delaware is `delaware`
    listing = Listing(default_dataset, str(base), video=False)
    for n, raw in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        rel = row["path"]
        where = f"{manifest.name} line {n} ({rel or 'empty path'})"
        if not rel:
            listing.reject(where, "row has no path")
            continue
        path = (base / rel) if not Path(rel).is_absolute() else Path(rel)
        if not allow_outside and leaves(base, path):
            listing.reject(rel, outside_reason(f"{manifest.name} line {n}", "the manifest's folder"))
            continue
        if not path.exists():
            listing.reject(rel, f"label has no image: listed on {manifest.name} line {n} but the file does not exist")
            continue
        if not is_image(path):
            listing.reject(rel, "not an image file")
            continue
        try:
            label = parse_label(row["label"]) if row.get("label") else None
            level = float(row["level"]) if row.get("level") else None
            if level is not None and not (math.isfinite(level) and level >= 0):
                raise ValueError(f"level {row['level']!r} is not a number 0 or above (a missing level is left empty)")
            if label is None and level is None:
                raise ValueError("neither label nor level is given")
            if label is None:
                label = binary_label(level)  # type: ignore[arg-type]
            if level is None:
                level = float(label)
            if binary_label(level) != label:
                raise ValueError(f"label {row['label']!r} contradicts level {level}")
            frame = int(row["frame"]) if row.get("frame") else 0
        except ValueError as exc:
            listing.reject(rel, f"{manifest.name} line {n}: {exc}")
            continue
        if not row.get("subject"):
            listing.reject(rel, f"{manifest.name} line {n}: no subject")
            continue
        dataset = (row.get("dataset") or default_dataset).lower()  # dataset keys are lower case everywhere
        problem = dataset_problem(dataset)
        if problem:
            listing.reject(rel, f"{manifest.name} line {n}: {problem}")
            continue
        listing.records.append(SourceRecord(
            dataset=dataset, path=str(path.resolve()), rel=rel,
            subject=row["subject"], sequence=row.get("sequence") or "", frame=frame,
            pain_level=level, label=label,
        ))
    return listing


def dataset_problem(name: str) -> str | None:
    """Why `name` cannot name a manifest's dataset, or None."""
    if name in CP_PAIN:
        return (f"dataset {name!r} is the external CP set, which comes only from --cppain (with its raters' scores); "
                "a manifest lists PAIN-DB faces: name their dataset otherwise")
    if not DATASET_NAME.fullmatch(name):
        return (f"dataset {name!r} is not a plain name (letters, digits, '_' or '-', at most 64, no path); "
                "write one in the manifest's dataset column")
    return None
