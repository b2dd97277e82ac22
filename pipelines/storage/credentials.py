"""S3 credentials kept out of what Ray records.

Ray Tune copies `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_SECURITY_TOKEN` from
the environment of the process that runs it into every trial actor's runtime env (ray/tune/execution/
class_cache.py), and Ray's runtime-env agent writes each runtime env it creates, variables and all, to its log.
While a search's Tune runs, those variables therefore live in a credentials file only this user can read
(`AWS_SHARED_CREDENTIALS_FILE`, which pyarrow's and boto3's S3 clients read like the variables); the trial actors
get the node's own credentials (its environment, instance profile or pod identity), as every other worker does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.private import private_folder, write_private

# the variables Tune copies into its trials' runtime env, and their names in a credentials file
SECRET_VARS = {"AWS_ACCESS_KEY_ID": "aws_access_key_id", "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
               "AWS_SESSION_TOKEN": "aws_session_token", "AWS_SECURITY_TOKEN": "aws_security_token"}
FILE_VAR = "AWS_SHARED_CREDENTIALS_FILE"
PROFILE_VARS = ("AWS_DEFAULT_PROFILE", "AWS_PROFILE")
PREFIX = "aws-credentials-"


def _sweep(folder) -> None:
    """Remove the files of searches whose process is gone (a SIGKILL skips their own removal)."""
    for f in folder.glob(f"{PREFIX}*"):
        try:
            pid = int(f.name[len(PREFIX):].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except (ValueError, PermissionError):  # not one of ours, or a live process of another user
            continue


@contextmanager
def out_of_environment() -> Iterator[None]:
    """Within, this process's AWS credentials come from a private file instead of its environment; after, the
    environment is as it was and the file is gone."""
    found = {k: os.environ[k] for k in SECRET_VARS if k in os.environ}
    if not found:
        yield
        return
    before = os.environ.get(FILE_VAR)
    folder = private_folder(holds="S3 credentials while a search runs")
    _sweep(folder)
    path = folder / f"{PREFIX}{os.getpid()}-{id(found)}"
    # the section the SDKs look up: AWS_DEFAULT_PROFILE (the C++ SDK's first choice), AWS_PROFILE, else default
    profiles = dict.fromkeys(os.environ.get(v) for v in PROFILE_VARS if os.environ.get(v)) or {"default": None}
    keys = "".join(f"{SECRET_VARS[k]} = {v}\n" for k, v in found.items())
    write_private(path, "".join(f"[{name}]\n{keys}" for name in profiles))
    try:
        for k in found:
            del os.environ[k]
        os.environ[FILE_VAR] = str(path)
        yield
    finally:
        os.environ.update(found)
        if before is None:
            os.environ.pop(FILE_VAR, None)
        else:
            os.environ[FILE_VAR] = before
        path.unlink(missing_ok=True)
