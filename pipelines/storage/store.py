"""One view of a place to write: a local folder or `s3://bucket/prefix` (S3-compatible stores too).

Everything that painsearch writes goes through `Store`, so shards and results behave the same on a
laptop and on a cluster, and every write is atomic: a reader never sees half a file.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs

from pipelines.errors import PainsearchError
from pipelines.storage.s3 import explain_error, s3_filesystem

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

    def exists(self, *parts: str) -> bool:
        info = self._call(lambda: self.fs.get_file_info(self.path(*parts)), "read")
        return info.type != pafs.FileType.NotFound

    def read_bytes(self, *parts: str) -> bytes:
        def read() -> bytes:
            with self.fs.open_input_stream(self.path(*parts)) as f:
                return f.read()

        return self._call(read, "read")

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write atomically: a local temp file renamed into place; an S3 object appears whole."""
        target = self.path(*parts)
        parent = target.rsplit("/", 1)[0]

        def write() -> None:
            if not self.is_s3:
                self.fs.create_dir(parent, recursive=True)
                tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
                with self.fs.open_output_stream(tmp) as f:
                    f.write(data)
                self.fs.move(tmp, target)
            else:
                with self.fs.open_output_stream(target) as f:
                    f.write(data)

        self._call(write, "write")

    def list(self, *parts: str) -> list[str]:
        """Names of the files directly below a folder (none if it does not exist)."""
        base = self.path(*parts)
        selector = pafs.FileSelector(base, allow_not_found=True, recursive=False)
        infos = self._call(lambda: self.fs.get_file_info(selector), "read")
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)

    def dirs(self, *parts: str) -> list[str]:
        """Names of the folders directly below a folder (none if it does not exist)."""
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True, recursive=False)
        infos = self._call(lambda: self.fs.get_file_info(selector), "read")
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def delete_dir(self, *parts: str) -> None:
        self._call(lambda: self.fs.delete_dir(self.path(*parts)), "write")

    def delete(self, *parts: str) -> None:
        self._call(lambda: self.fs.delete_file(self.path(*parts)), "write")

    def check_writable(self) -> None:
        """Fail early, in one sentence, when the destination cannot be written."""
        probe = f".painsearch-probe-{uuid.uuid4().hex}"
        self.write_bytes(b"ok", probe)
        self.delete(probe)

    def _call(self, fn, action: str):
        try:
            return fn()
        except PainsearchError:
            raise
        except (OSError, ValueError) as exc:
            raise PainsearchError(explain_error(self.uri, self.is_s3, action, exc)) from exc


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
