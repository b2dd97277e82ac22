"""Each search's Optuna study, kept in the results store as an Optuna journal (`optuna.journal`), so that
`optuna-dashboard` opens it and `optuna.load_study` reads it; a resumed search keeps writing to it.

A local store holds the journal in place. For an `s3://` store the journal lives in a local file while the
search runs (a journal needs appends and file locks, which S3 has not), is copied into the store after every
trial and when the search ends, and is copied back before a resumed search goes on.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipelines.storage import Store
from search.layout import OPTUNA_JOURNAL, SearchKey

CACHE = Path(os.environ.get("PAINSEARCH_CACHE", Path.home() / ".cache" / "painsearch")) / "optuna"


def journal_path(store: Store, key: SearchKey) -> Path:
    """Where the search's journal is written while it runs."""
    if not store.is_s3:
        path = Path(store.path(key.path, OPTUNA_JOURNAL))
    else:
        path = CACHE / f"{hashlib.sha256(store.uri_of(key.path).encode()).hexdigest()[:20]}.journal"
        if not path.exists() and store.exists(key.path, OPTUNA_JOURNAL):  # a resumed search goes on from the store's
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(store.read_bytes(key.path, OPTUNA_JOURNAL))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def storage(store: Store, key: SearchKey):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal_path(store, key))))


def sync(store: Store, key: SearchKey) -> None:
    """Copy the local journal of an S3 store's search into the store (nothing to do for a local store)."""
    if store.is_s3:
        path = journal_path(store, key)
        if path.exists():
            store.write_bytes(path.read_bytes(), key.path, OPTUNA_JOURNAL)


def sync_callback(store: Store, key: SearchKey):
    """A Tune callback that copies the journal into the store after every trial."""
    from ray.tune import Callback

    class SyncJournal(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            sync(store, key)

    return SyncJournal()
