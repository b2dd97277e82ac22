"""CP-PAIN or a user's own clinical set: a folder of images plus `ratings.csv`, one row per image and rater.

Columns of `ratings.csv` (documented in the README):
  image       path of the image, relative to the folder
  subject     the person's id (pseudonymised before anything is written)
  video       the recording the frame came from
  stimulus    injection | stretching | other (free text is kept as given)
  rater       the rater's id
  au4, au6, au7, au9, au10, au43   FACS intensities 0..5
  ncapc       NCAPC total
  wong_baker  Wong-Baker FACES 0..10
The label is the paper's consensus: no pain only when every rater's FACS score is 0.
"""

from __future__ import annotations

import csv

from pathlib import Path

import pandas as pd

from pipelines.sources.base import Listing, SourceRecord, is_image, layout_error, leaves, outside_reason
from pipelines.errors import PainsearchError
from pipelines.labels import consensus_label, facs_score

RATINGS_FILE = "ratings.csv"
AU_COLUMNS = ("au4", "au6", "au7", "au9", "au10", "au43")
COLUMNS = ("image", "subject", "video", "stimulus", "rater", *AU_COLUMNS, "ncapc", "wong_baker")
EXPECTED = f"a CP-PAIN folder (images plus {RATINGS_FILE} with columns {', '.join(COLUMNS)})"


def read_ratings(path: str | Path) -> pd.DataFrame:
    """The ratings table, validated, with the 20-point FACS score added as column `facs`."""
    path = Path(path)
    if not path.is_file():
        raise PainsearchError(f"The ratings file {path} does not exist; expected a CSV with columns {', '.join(COLUMNS)}.")
    try:
        # every cell as text, whatever the header's case: ids such as 007 stay 007, and an empty cell stays empty
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PainsearchError(f"The ratings file {path} is not a readable CSV ({exc}); save it as UTF-8 CSV with a header row.") from exc
    df.columns = [c.strip().lower() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise PainsearchError(
            f"The ratings file {path} lacks the column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)} "
            f"(see the README, 'CP-PAIN ratings')."
        )
    with open(path, newline="", encoding="utf-8-sig") as f:  # pandas renames a repeated header (x, x.1): read it raw
        header = [c.strip().lower() for c in next(csv.reader(f), [])]
    if len(set(header)) < len(header):
        twice = sorted({c for c in header if header.count(c) > 1})
        raise PainsearchError(f"The ratings file {path} has the column(s) {', '.join(twice)} more than once; keep one "
                              f"of each.")
    ids = ["image", "subject", "video", "rater"]
    df[ids] = df[ids].apply(lambda c: c.str.strip())
    empty = (df[ids] == "").any(axis=1)
    if empty.any():
        first = int(empty.to_numpy().nonzero()[0][0])
        blank = [c for c in ids if df[c].iloc[first] == ""]
        raise PainsearchError(
            f"The ratings file {path} has {int(empty.sum())} row(s) with an empty id (first at line {first + 2}: "
            f"{', '.join(blank)}); every row names its image, subject, video and rater: fill them in or remove the row."
        )
    numeric = [*AU_COLUMNS, "ncapc", "wong_baker"]
    values = df[numeric].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1) | (values[list(AU_COLUMNS)] < 0).any(axis=1) | (values[list(AU_COLUMNS)] > 5).any(axis=1)
    if bad.any():
        first = int(bad.to_numpy().nonzero()[0][0])
        raise PainsearchError(
            f"The ratings file {path} has {int(bad.sum())} row(s) with a missing or out-of-range score "
            f"(first at line {first + 2}); AU columns must be numbers 0..5 and ncapc, wong_baker numbers."
        )
    df[numeric] = values
    df["facs"] = [facs_score({c.upper(): r[c] for c in AU_COLUMNS}) for _, r in df.iterrows()]
    return df


def twice_rated(ratings: pd.DataFrame) -> dict[str, str]:
    """Images that one rater rated more than once -> that rater: a consensus over them is ambiguous."""
    dup = ratings[ratings.duplicated(["image", "rater"], keep=False)]
    return {str(image): str(g["rater"].iloc[0]) for image, g in dup.groupby("image")}


def read(root: str | Path, flag: str = "--cppain", allow_outside: bool = False) -> Listing:
    root = Path(root)
    if not (root / RATINGS_FILE).is_file():
        raise layout_error(flag, root, EXPECTED)
    ratings = read_ratings(root / RATINGS_FILE)
    twice = twice_rated(ratings)
    listing = Listing("cppain", str(root), video=False)
    rated = set()
    for image, group in ratings.groupby("image", sort=True):
        rated.add(str(image))
        path = root / str(image)
        if not allow_outside and leaves(root, path):
            listing.reject(image, outside_reason(f"{RATINGS_FILE} ({image})", "the CP-PAIN folder"))
            continue
        if str(image) in twice:
            listing.reject(image, f"rated twice by rater {twice[str(image)]} in {RATINGS_FILE}; keep one rating per "
                                  f"image and rater")
            continue
        if not path.exists():
            listing.reject(image, f"label has no image: rated in {RATINGS_FILE} but the file does not exist")
            continue
        if not is_image(path):
            listing.reject(image, "not an image file")
            continue
        first = group.iloc[0]
        listing.records.append(SourceRecord(
            dataset="cppain", path=str(path.resolve()), rel=str(image), subject=str(first["subject"]),
            sequence=str(first["video"]), frame=0, pain_level=float(group["facs"].mean()),
            label=consensus_label(group["facs"]),
        ))
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(path.relative_to(root))
        if rel != RATINGS_FILE and rel not in rated and is_image(path):
            listing.reject(rel, f"image has no label: no row of {RATINGS_FILE} rates it")
    return listing
