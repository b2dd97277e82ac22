"""UNBC-McMaster Shoulder Pain: `Images/<subject>/<sequence>/<seq><frame>.png` with per-frame PSPI files.

Some mirrors nest `Images/Images` and `Frame_Labels/Frame_Labels`; both are accepted.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from pipelines.sources.base import Listing, SourceRecord, is_image, layout_error, leaves, outside_reason
from pipelines.labels import binary_label

EXPECTED = "the UNBC-McMaster layout (Images/<subject>/<sequence>/*.png and Frame_Labels/PSPI/<subject>/<sequence>/*_facs.txt)"
LABEL_SUFFIX = "_facs.txt"


def _unnest(path: Path) -> Path:
    return path / path.name if (path / path.name).is_dir() else path


def read(root: str | Path, flag: str = "--unbc", allow_outside: bool = False) -> Listing:
    root = Path(root)
    images = _unnest(root / "Images")
    pspi_dir = _unnest(root / "Frame_Labels") / "PSPI"
    if not images.is_dir() or not pspi_dir.is_dir():
        raise layout_error(flag, root, EXPECTED)
    listing = Listing("unbc", str(root), video=True)
    labelled: set[Path] = set()
    for img in sorted(p for p in images.glob("*/*/*") if p.is_file() and not p.name.startswith(".")):
        rel = img.relative_to(root)
        subject, sequence = img.parent.parent.name, img.parent.name
        if not allow_outside and leaves(root, img):
            listing.reject(rel, outside_reason(str(rel), "the UNBC folder"))
            continue
        if not is_image(img):
            listing.reject(rel, "not an image file (expected .png frames)")
            continue
        label_file = pspi_dir / subject / sequence / f"{img.stem}{LABEL_SUFFIX}"
        labelled.add(label_file)
        if not label_file.is_file():
            listing.reject(rel, f"image has no label: {label_file.relative_to(root)} is missing")
            continue
        try:
            token = label_file.read_text().split()[0]
            level = float(token)
        except (ValueError, IndexError, UnicodeDecodeError):
            listing.reject(label_file.relative_to(root), "PSPI file does not hold a number")
            continue
        if not (math.isfinite(level) and level >= 0):
            listing.reject(label_file.relative_to(root), f"PSPI file holds {token!r}, not a score 0 or above")
            continue
        match = re.search(r"(\d+)$", img.stem)
        listing.records.append(SourceRecord(
            dataset="unbc", path=str(img), rel=str(rel), subject=subject, sequence=sequence,
            frame=int(match.group(1)) if match else 0, pain_level=level, label=binary_label(level),
        ))
    for label_file in sorted(pspi_dir.glob(f"*/*/*{LABEL_SUFFIX}")):
        if label_file not in labelled:
            listing.reject(label_file.relative_to(root), "label has no image: no frame of that name under Images/")
    if not listing.records and not listing.rejected:
        raise layout_error(flag, root, EXPECTED)
    return listing
