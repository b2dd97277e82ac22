"""What every dataset adapter returns: source records, and the inputs it had to refuse."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import PainsearchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# The paper's two sets, by the dataset names the adapters give: PAIN-DB trains, CP-PAIN is the external test.
PAIN_DB: tuple[str, ...] = ("unbc", "mintpain", "delaware")
CP_PAIN: tuple[str, ...] = ("cppain",)


@dataclass(frozen=True)
class SourceRecord:
    """One image of a source, labelled, before anything is decoded. `subject` is still the raw id."""

    dataset: str
    path: str  # absolute local path
    rel: str  # path relative to the source root, for reports
    subject: str
    sequence: str
    frame: int
    pain_level: float
    label: int


@dataclass(frozen=True)
class Rejected:
    dataset: str
    rel: str
    reason: str


@dataclass
class Listing:
    """An adapter's answer. `video` sources get N frames per subject and class sampled from them."""

    dataset: str
    root: str
    video: bool
    records: list[SourceRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def reject(self, rel: str | Path, reason: str) -> None:
        self.rejected.append(Rejected(self.dataset, str(rel), reason))


def leaves(root: Path, path: Path) -> bool:
    """Whether `path`, links followed, leads out of `root`: whether a file exists there or not, the answer
    (and the sentence a row gets) is the same, so a listing tells nothing of the files outside."""
    try:
        path.resolve().relative_to(root.resolve())
        return False
    except ValueError:
        return True


def outside_reason(where: str, folder: str) -> str:
    return (f"{where}: the path leaves {folder}, and paths are kept inside it so that a data set reads no other "
            f"files; move the file in, or set allow_outside_paths (--allow-outside-paths) if that is meant")


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def layout_error(flag: str, root: Path, expected: str) -> PainsearchError:
    """The sentence for a folder that is not the layout it was named as."""
    if not root.exists():
        found = "nothing (the path does not exist)"
    elif root.is_file():
        found = "a file, not a folder"
    else:
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if not p.name.startswith("."))
        found = ", ".join(entries[:8]) + (f" and {len(entries) - 8} more" if len(entries) > 8 else "") if entries else "an empty folder"
    return PainsearchError(
        f"{flag} {root} does not look like {expected}; found {found}; point {flag} at the folder as distributed."
    )
