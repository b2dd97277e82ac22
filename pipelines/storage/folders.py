"""An output folder replaced whole: a run that fails half way leaves the previous output as it was."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.errors import PainsearchError

# Written into every folder `written_whole` makes: only such a folder is ever replaced.
MARK = ".painsearch-output"


def check_target(target: str | Path) -> Path:
    """`target`, resolved, once it is a folder `written_whole` may replace: a command that works long before it
    writes asks first."""
    target = Path(target).resolve()  # "." and "out/" name their folder, which the new one must sit beside
    if target.exists() and not (target.is_dir() and (not any(target.iterdir()) or (target / MARK).is_file())):
        raise PainsearchError(f"{target} holds files painsearch did not write there, and an output folder is replaced "
                              f"whole; name a new or empty folder (or one an earlier run of this command wrote).")
    if Path.cwd().resolve().is_relative_to(target):
        raise PainsearchError(f"{target} is the current folder or holds it; name a folder inside it for the output.")
    return target


@contextmanager
def written_whole(target: str | Path) -> Iterator[Path]:
    """A new folder beside `target` to write its whole new content into. When the block ends, the new folder takes
    `target`'s place (two renames on one filesystem; the old content is removed only then), so no reader ever sees
    old and new files mixed or stale files beside new ones; when the block fails, `target` stays as it was and the
    new folder goes. A `target` that holds anything painsearch did not write this way (the current folder, a folder
    of the user's) is refused before any work, never replaced."""
    target = check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # as a folder made by mkdir would be, not mkdtemp's 0700
    try:
        (work / MARK).write_text("written by painsearch; the next run of the same command replaces this folder\n")
        yield work
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{work.name.rsplit('-', 1)[-1]}"
            os.rename(target, old)
        try:
            os.rename(work, target)
        except OSError:
            if old is not None:
                os.rename(old, target)  # the earlier output back in its place
            raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
