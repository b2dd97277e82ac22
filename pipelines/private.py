"""This user's private folder under the temporary folder: where painsearch keeps what no other user may read or
plant (the native log, a search's S3 credentials while Tune runs)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from pipelines.errors import PainsearchError


def private_root() -> Path:
    return Path(tempfile.gettempdir()) / f"painsearch-{os.getuid()}"


def private_folder(path: Path | None = None, holds: str = "its private files") -> Path:
    """`path` (by default `private_root()`) as a folder only this user can enter: made so, or refused when it is a
    link, not a folder, or another user's (on a shared host anyone may plant a name in the temporary folder
    first). `holds` says what painsearch keeps there, for the refusal's sentence."""
    path = path or private_root()
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PainsearchError(f"{path} is not a folder of yours (it is a link, a file or another user's), and "
                              f"painsearch keeps {holds} there; remove it, or set TMPDIR to a folder of your own.")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """A new file only this user can read, never written through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
