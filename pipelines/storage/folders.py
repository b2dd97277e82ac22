"""An output folder replaced whole: a run that fails half way leaves the previous output as it was."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_whole(target: str | Path) -> Iterator[Path]:
    """A new folder beside `target` to write its whole new content into. When the block ends, the new folder takes
    `target`'s place (two renames on one filesystem; the old content is removed only then), so no reader ever sees
    old and new files mixed or stale files beside new ones; when the block fails, `target` stays as it was and the
    new folder goes."""
    target = Path(target).resolve()  # "." and "out/" name their folder, which the new one must sit beside
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # as a folder made by mkdir would be, not mkdtemp's 0700
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    old = None
    if target.exists() or target.is_symlink():
        old = target.parent / f".{target.name}.old-{work.name.rsplit('-', 1)[-1]}"
        os.rename(target, old)
    os.rename(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()
