"""MInt PAIN: `Sub<NN> <name>/Annotated_data_Sub<NN>_Trial<TT>/Sub<NN>_Trial<TT>_Sweep<SS>_Label<L>/RGB/*.jpg`.

The level (0 no pain, 1..4 increasing) comes from the sweep folder's name. Only the RGB stream is
read; the subject id keeps `Sub<NN>` and drops the name that follows it.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.sources.base import Listing, SourceRecord, is_image, layout_error, leaves, outside_reason
from pipelines.labels import binary_label

EXPECTED = "the MInt PAIN layout (Sub<NN> <name>/Annotated_data_Sub<NN>_Trial<TT>/Sub<NN>_Trial<TT>_Sweep<SS>_Label<L>/RGB/*.jpg)"
SUBJECT = re.compile(r"^(Sub\d+)\b")
MAX_LEVEL = 4
SWEEP = re.compile(r"^Sub\d+_(Trial\d+)_(Sweep\d+)(?:_Label(\d+))?$")


def read(root: str | Path, flag: str = "--mintpain", allow_outside: bool = False) -> Listing:
    root = Path(root)
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and SUBJECT.match(p.name)) if root.is_dir() else []
    if not subjects:
        raise layout_error(flag, root, EXPECTED)
    listing = Listing("mintpain", str(root), video=True)
    for sub_dir in subjects:
        subject = SUBJECT.match(sub_dir.name).group(1)  # type: ignore[union-attr]
        for sweep_dir in sorted(sub_dir.glob("Annotated_data_*/*")):
            if not sweep_dir.is_dir():
                continue
            m = SWEEP.match(sweep_dir.name)
            frames = sorted(p for p in (sweep_dir / "RGB").glob("*") if p.is_file() and not p.name.startswith("."))
            if m is None:
                listing.reject(sweep_dir.relative_to(root), "folder name does not follow Sub<NN>_Trial<TT>_Sweep<SS>_Label<L>")
                continue
            if m.group(3) is None:
                for f in frames:
                    listing.reject(f.relative_to(root), "image has no label: its sweep folder name carries no _Label<L>")
                continue
            level = float(m.group(3))
            if level > MAX_LEVEL:
                for f in frames:
                    listing.reject(f.relative_to(root), f"its sweep folder says Label{m.group(3)}, outside MInt PAIN's levels "
                                                        f"0..{MAX_LEVEL}")
                continue
            if not frames:
                listing.reject(sweep_dir.relative_to(root), "label has no image: the sweep has no RGB frames")
            for i, f in enumerate(frames):
                if not allow_outside and leaves(root, f):
                    listing.reject(f.relative_to(root), outside_reason(str(f.relative_to(root)), "the MInt PAIN folder"))
                    continue
                if not is_image(f):
                    listing.reject(f.relative_to(root), "not an image file (expected .jpg frames)")
                    continue
                listing.records.append(SourceRecord(
                    dataset="mintpain", path=str(f), rel=str(f.relative_to(root)), subject=subject,
                    sequence=f"{m.group(1)}_{m.group(2)}", frame=i, pain_level=level, label=binary_label(level),
                ))
    return listing
