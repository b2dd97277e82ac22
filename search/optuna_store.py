"""Each search's Optuna study, kept in the results store as an Optuna journal (`optuna.journal`), so that
`optuna-dashboard` opens it and `optuna.load_study` reads it; a resumed search keeps writing to it.

A local store holds the journal in place. For an `s3://` store the journal lives in a local file while the
search runs (a journal needs appends and file locks, which S3 has not), is copied into the store when each
trial starts and ends and when the search ends, and is copied back before a resumed search goes on (unless
this node's copy already goes on from it). A search that starts afresh (Tune has nothing to restore) starts a
fresh journal, whatever an earlier run left in the store or in the local cache.
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
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def begin(store: Store, key: SearchKey, resumed: bool) -> None:
    """Before the searcher opens the journal: a resumed search goes on from the store's journal; a fresh one
    starts with none (trials of a search Tune cannot restore would otherwise steer the sampler, and a local
    copy left by an earlier run of the same store path would be taken for this one's)."""
    local = journal_path(store, key)
    if resumed and store.is_s3 and store.exists(key.path, OPTUNA_JOURNAL):
        stored = store.read_bytes(key.path, OPTUNA_JOURNAL)
        # this node's copy is newer when it goes on from the store's (a resume where the search last ran)
        if not (local.exists() and local.read_bytes().startswith(stored)):
            local.write_bytes(stored)
    elif not resumed:
        local.unlink(missing_ok=True)
        if store.is_s3 and store.exists(key.path, OPTUNA_JOURNAL):
            store.delete(key.path, OPTUNA_JOURNAL)


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
    """A Tune callback that copies the journal into the store when a trial starts (the searcher has just asked
    Optuna for it, which numbers trials by their count in the journal: a resumed search must find every trial
    asked for so far) and when it ends."""
    from ray.tune import Callback

    class SyncJournal(Callback):
        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            sync(store, key)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            sync(store, key)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            sync(store, key)

    return SyncJournal()


def merge_journals(store: Store, keys: list[SearchKey], out: Path) -> list[str]:
    """Every search's Optuna study among `keys` that has a journal in the store, copied into one new journal file
    `out` under the search's own name (`<model>-<scenario>-fold<k>`): what `optuna-dashboard out` opens whole.
    Returns the names copied."""
    import tempfile

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out.parent.mkdir(parents=True, exist_ok=True)
    merged = JournalStorage(JournalFileBackend(str(out)))
    copied = []
    for key in keys:
        if not store.exists(key.path, OPTUNA_JOURNAL):
            continue
        with tempfile.TemporaryDirectory(prefix="painsearch-optuna-") as folder:
            local = Path(folder) / OPTUNA_JOURNAL
            local.write_bytes(store.read_bytes(key.path, OPTUNA_JOURNAL))
            optuna.copy_study(from_study_name=key.slug, from_storage=JournalStorage(JournalFileBackend(str(local))),
                              to_storage=merged)
        copied.append(key.slug)
    return copied
