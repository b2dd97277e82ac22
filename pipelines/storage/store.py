"""One view of a place to write: a local folder or `s3://bucket/prefix` (S3-compatible stores too).

Everything that painsearch writes goes through `Store`, so shards and results behave the same on a
laptop and on a cluster. Every write is atomic (a local temporary file renamed into place, or an S3
object that appears whole), and listings never show a temporary file that a killed write left behind.
An operation that fails for a passing reason (the server unreachable or overloaded) is tried again with
growing waits for up to `pipelines.retries.STORE_PATIENCE_S`, so a storage outage pauses a study
instead of failing its trials.
"""

from __future__ import annotations

import errno
import logging
import os
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs

from pipelines import retries
from pipelines.errors import PainsearchError, StoreUnreachable
from pipelines.storage.s3 import explain_error, s3_filesystem, transient

TMP_PREFIX = ".tmp-"  # a write in progress (or one a kill cut short): never listed
PROBE_PREFIX = ".painsearch-probe-"
log = logging.getLogger(__name__)


def _hidden(name: str) -> bool:
    return name.startswith((TMP_PREFIX, PROBE_PREFIX))

@dataclass(frozen=True)
class Store:
    """A filesystem and a root inside it; paths given to its methods are relative to the root."""

    uri: str
    fs: pafs.FileSystem
    root: str

    @property
    def is_s3(self) -> bool:
        return isinstance(self.fs, pafs.S3FileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def uri_of(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def exists(self, *parts: str, patience: float = retries.STORE_PATIENCE_S) -> bool:
        info = self._call(lambda: self.fs.get_file_info(self.path(*parts)), "read", patience)
        return info.type != pafs.FileType.NotFound

    def read_bytes(self, *parts: str, patience: float = retries.STORE_PATIENCE_S) -> bytes:
        def read() -> bytes:
            with self.fs.open_input_stream(self.path(*parts)) as f:
                return f.read()

        return self._call(read, "read", patience)

    def read_parquet(self, path: str, columns: list[str] | None = None,
                     patience: float = retries.STORE_PATIENCE_S):
        """A Parquet file of this store (`path` as `self.path` gives it) as a pyarrow Table, through the retry."""
        import pyarrow.parquet as pq

        return self._call(lambda: pq.read_table(path, filesystem=self.fs, columns=columns), "read", patience)

    def file_size(self, path: str, patience: float = retries.STORE_PATIENCE_S) -> int | None:
        """The size of a file of this store (`path` as `self.path` gives it), None where there is none; through the
        retry."""
        from pyarrow.fs import FileType

        info = self._call(lambda: self.fs.get_file_info(path), "read", patience)
        return None if info.type == FileType.NotFound else int(info.size or 0)

    def parquet_rows(self, path: str, patience: float = retries.STORE_PATIENCE_S) -> int:
        """The row count a Parquet file's footer records (`path` as `self.path` gives it), through the retry: a file
        cut short has no footer, and reading fails with a sentence."""
        import pyarrow.parquet as pq

        def rows() -> int:
            with self.fs.open_input_file(path) as f:
                return pq.read_metadata(f).num_rows

        return self._call(rows, "read", patience)

    def write_bytes(self, data: bytes, *parts: str, patience: float = retries.STORE_PATIENCE_S) -> None:
        """Write atomically: a local temp file renamed into place; an S3 object appears whole."""
        target = self.path(*parts)
        parent = target.rsplit("/", 1)[0]

        def write() -> None:
            if not self.is_s3:
                self.fs.create_dir(parent, recursive=True)
                tmp = f"{parent}/{TMP_PREFIX}{uuid.uuid4().hex}"
                with self.fs.open_output_stream(tmp) as f:
                    f.write(data)
                self.fs.move(tmp, target)
            else:
                with self.fs.open_output_stream(target) as f:
                    f.write(data)

        self._call(write, "write", patience)

    def move_file(self, local: str | os.PathLike, *parts: str, patience: float = retries.STORE_PATIENCE_S) -> None:
        """A local file put in the store as atomically as `write_bytes`, without reading it into memory: renamed
        into place on a local store (a checkpoint's weights are tens to hundreds of MB a save); copied first, then
        renamed, from another filesystem; streamed to S3 (an object appears whole). `local` is gone afterwards."""
        target = self.path(*parts)
        parent = target.rsplit("/", 1)[0]
        source = pafs.LocalFileSystem()

        def move() -> None:
            if not self.is_s3:
                self.fs.create_dir(parent, recursive=True)
                try:
                    os.replace(local, target)  # one filesystem: the rename is the whole write
                    return
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                tmp = f"{parent}/{TMP_PREFIX}{uuid.uuid4().hex}"
                pafs.copy_files(os.fspath(local), tmp, source_filesystem=source, destination_filesystem=self.fs)
                self.fs.move(tmp, target)
            else:
                pafs.copy_files(os.fspath(local), target, source_filesystem=source, destination_filesystem=self.fs)
            os.remove(local)

        self._call(move, "write", patience)

    def list(self, *parts: str) -> list[str]:
        """Names of the files directly below a folder (none if it does not exist)."""
        base = self.path(*parts)
        selector = pafs.FileSelector(base, allow_not_found=True, recursive=False)
        infos = self._call(lambda: self.fs.get_file_info(selector), "read")
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and not _hidden(i.base_name))

    def dirs(self, *parts: str) -> list[str]:
        """Names of the folders directly below a folder (none if it does not exist)."""
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True, recursive=False)
        infos = self._call(lambda: self.fs.get_file_info(selector), "read")
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and not _hidden(i.base_name))

    def delete_dir(self, *parts: str) -> None:
        self._call(lambda: self.fs.delete_dir(self.path(*parts)), "write")

    def delete(self, *parts: str) -> None:
        self._call(lambda: self.fs.delete_file(self.path(*parts)), "write")

    def check_writable(self) -> None:
        """Fail early, in one sentence, when the destination cannot be written: at the start of a command a store
        that does not answer is a wrong setting, so this tries once."""
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        self.write_bytes(b"ok", probe, patience=0.0)
        self.delete(probe)

    def _call(self, fn, action: str, patience: float = retries.STORE_PATIENCE_S):
        """`fn()`, tried again while it fails for a passing reason, with growing waits, for up to `patience` s."""
        deadline, wait = time.monotonic() + patience, retries.STORE_FIRST_WAIT_S
        while True:
            try:
                return fn()
            except PainsearchError:
                raise
            except (OSError, ValueError) as exc:
                left = deadline - time.monotonic()
                passing = self.is_s3 and transient(exc)
                if not passing or left <= 0:
                    error = StoreUnreachable if passing else PainsearchError
                    raise error(explain_error(self.uri, self.is_s3, action, exc)) from exc
                # The last wait is cut to the deadline, so the store is tried once more at the end of its patience.
                pause = min(wait, left)
                log.warning("%s: could not %s (%s); trying again in %.0f s", self.uri, action, str(exc)[:200], pause)
                time.sleep(pause)
                wait = min(2 * wait, retries.STORE_MAX_WAIT_S)


def open_store(uri: str, endpoint: str | None = None) -> Store:
    """A `Store` for a local path or an `s3://bucket/prefix` URI."""
    if not uri:
        raise PainsearchError("An empty storage location was given; pass a local folder or s3://bucket/prefix.")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise PainsearchError(f"The S3 URI {uri!r} names no bucket; write it as s3://bucket/prefix.")
        root = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        return Store(uri=uri.rstrip("/"), fs=s3_filesystem(endpoint), root=root)
    if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:
        raise PainsearchError(
            f"The storage location {uri!r} uses the scheme {parsed.scheme!r}; expected a local path or s3://bucket/prefix."
        )
    local = os.path.abspath(os.path.expanduser(parsed.path if parsed.scheme == "file" else uri))
    return Store(uri=local, fs=pafs.LocalFileSystem(), root=local)
