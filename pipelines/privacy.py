"""Subject pseudonyms: a keyed HMAC of the source id, so shards never carry a real name.

The key stays with the user (environment or key file). The same key always gives the same
pseudonyms, which keeps folds stable across reruns; a different key cannot be linked back.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from pathlib import Path

from pipelines.errors import PainsearchError

KEY_ENV = "PAINSEARCH_SUBJECT_KEY"
# Public on purpose: only phantom data (no real person) is ever pseudonymised with it.
DEMO_KEY = b"painsearch-phantom-demo-key-not-secret"
MIN_KEY_BYTES = 16


def load_key(key_file: str | Path | None = None, demo: bool = False) -> bytes:
    """The HMAC key from a key file, else the environment, else the demo key for phantom data."""
    if key_file is not None:
        path = Path(key_file).expanduser()
        if not path.is_file():
            raise PainsearchError(
                f"The subject key file {path} does not exist; create it with a secret of at least "
                f"{MIN_KEY_BYTES} characters (for example `openssl rand -hex 32 > {path}`) or set "
                f"{KEY_ENV}."
            )
        key = path.read_bytes().strip()
    elif os.environ.get(KEY_ENV):
        key = os.environ[KEY_ENV].encode("utf-8", "surrogateescape")
        if not os.environ[KEY_ENV].strip():  # any kind of space, not only ASCII's
            raise PainsearchError(
                f"{KEY_ENV} is blank (only spaces); set it to a secret of at least {MIN_KEY_BYTES} characters, for "
                f"example `export {KEY_ENV}=$(openssl rand -hex 32)`."
            )
    elif demo:
        return DEMO_KEY
    else:
        raise PainsearchError(
            f"No key to pseudonymise subject ids was given; set {KEY_ENV} to a secret of at least "
            f"{MIN_KEY_BYTES} characters, or name a key file with `subject_key_file` in the config "
            f"(keep the same key to keep the same pseudonyms)."
        )
    # spaces of any kind pad a key without making it harder to guess: they do not count towards its length
    if len(key.decode("utf-8", "surrogateescape").strip().encode("utf-8", "surrogateescape")) < MIN_KEY_BYTES:
        raise PainsearchError(
            f"The subject key is {len(key.decode('utf-8', 'surrogateescape').strip())} characters long without its "
            f"spaces, shorter than the {MIN_KEY_BYTES} expected; use a longer secret (for example "
            f"`openssl rand -hex 32`)."
        )
    return key


def pseudonym(key: bytes, dataset: str, source_id: str, prefix: str = "s") -> str:
    """A stable, unlinkable id for (dataset, source id). The id is Unicode-normalised first (NFC): a name typed
    with a composed accent and the same name with a combining one are one person."""
    source_id = unicodedata.normalize("NFC", source_id)
    digest = hmac.new(key, f"{dataset}\x00{source_id}".encode(), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:12]}"
