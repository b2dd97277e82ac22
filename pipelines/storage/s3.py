"""S3 handling: the pyarrow filesystem for an S3-compatible endpoint, the S3 settings Ray workers need, and
what an S3 failure means in one sentence."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pyarrow.fs as pafs

from pipelines import retries

ENDPOINT_ENV = "AWS_ENDPOINT_URL"
# What pyarrow's S3 errors say when the failure passes: the server is unreachable, reset the connection,
# timed out, is overloaded (5xx) or throttles. pyarrow raises OSError for all of them, so its text is all
# there is to tell them from a refusal (credentials, a missing bucket), which no retry mends.
TRANSIENT = ("curlcode: 7", "couldn't connect", "could not connect", "connection refused", "connection reset",
             "connection was reset", "network_connection", "timed out", "timeout", "response code: 5",
             "http 5", "internalerror", "serviceunavailable", "service unavailable", "slowdown", "slow down",
             "throttl", "requesttimeout", "broken pipe", "empty reply")


# A host name that does not resolve is a typo far more often than an outage: waiting does not mend it.
UNRESOLVED = ("curlcode: 6", "could not resolve host", "couldn't resolve host")


def transient(exc: Exception) -> bool:
    """Whether an S3 error is worth trying again (see `TRANSIENT`; never `UNRESOLVED`)."""
    text = str(exc).lower()
    return not any(t in text for t in UNRESOLVED) and any(t in text for t in TRANSIENT)


def s3_filesystem(endpoint: str | None) -> pafs.S3FileSystem:
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
    kwargs: dict = {
        "connect_timeout": 5,
        "request_timeout": 30,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=retries.S3_CLIENT_ATTEMPTS),
    }
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme or "http"
    # No credentials here: given explicitly, pyarrow pickles them in plain text with the filesystem, and Tune
    # pickles its filesystem into the results store (tuner.pkl). Left out, every process resolves them from its
    # own environment or instance role (the AWS SDK's default chain), on whichever node it runs.
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        kwargs["region"] = region
    elif endpoint:
        kwargs["region"] = "us-east-1"
    return pafs.S3FileSystem(**kwargs)


# Where the store is, not who may use it: what a Ray worker is told. Credentials never travel with work (a
# runtime env is shown by the dashboard to whoever reaches it): each node resolves its own
# (`pipelines.storage.credentials` keeps them from Tune's copy).
S3_ENV_VARS = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION")


def s3_env() -> dict[str, str]:
    """The S3 settings of this process that Ray workers need to find the same store (no credentials)."""
    return {k: os.environ[k] for k in S3_ENV_VARS if os.environ.get(k)}


def explain_error(uri: str, is_s3: bool, action: str, exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    if not is_s3:
        return f"Could not {action} {uri}: {text}; check that the path exists and is writable."
    lowered = text.lower()
    endpoint = os.environ.get(ENDPOINT_ENV, "the default AWS endpoint")
    if "access denied" in lowered or "forbidden" in lowered or "signature" in lowered or "invalidaccesskeyid" in lowered:
        why = "the credentials were refused"
        fix = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to a key allowed to use that bucket"
    elif "nosuchbucket" in lowered or "bucket does not exist" in lowered or "not found" in lowered and "bucket" in lowered:
        why = "the bucket does not exist"
        fix = "create the bucket first, or name an existing one"
    elif any(t in lowered for t in UNRESOLVED):
        host = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}").hostname or endpoint
        why = f"the S3 endpoint's host name ({host}) does not resolve"
        fix = f"check {ENDPOINT_ENV} for a typo"
    elif "curl" in lowered or "connect" in lowered or "resolve" in lowered or "timeout" in lowered or "timed out" in lowered:
        why = f"the S3 endpoint ({endpoint}) could not be reached"
        fix = f"check {ENDPOINT_ENV} and that the server is running"
    else:
        why = text
        fix = f"check the URI, {ENDPOINT_ENV} and the credentials"
    return f"Could not {action} {uri}: {why}; {fix}."


