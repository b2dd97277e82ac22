"""Opening a finished shard set: its manifest, its rows in-process or as a Ray Dataset, rows by image id."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from pipelines.errors import PainsearchError, StoreUnreachable
from pipelines.shards.schema import (FORMAT, FORMAT_VERSION, ID_COLUMNS, MANIFEST, META_COLUMNS, REPORT, SCHEMA,
                                     image_ids)
from pipelines.storage import Store, open_store


def read_manifest(store: Store) -> dict[str, Any]:
    if not store.exists(MANIFEST):
        raise PainsearchError(
            f"{store.uri} holds no finished painsearch shards ({MANIFEST} is missing); run "
            f"`painsearch data prepare ... --out {store.uri}` (rerunning it resumes a run that stopped half way)."
        )
    manifest = json.loads(store.read_bytes(MANIFEST))
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise PainsearchError(
            f"{store.uri}/{MANIFEST} is not a painsearch shard manifest of version {FORMAT_VERSION}; "
            f"prepare the shards again with this painsearch."
        )
    return manifest


def shard_problem(store: Store, path: str, rows: int) -> str | None:
    """What is wrong with one shard file (`path` as `store.path` gives it), judged by reading its Parquet footer:
    missing, empty, cut short (no readable footer), or holding other than the `rows` its record says; None if
    sound."""
    size = store.file_size(path)
    if size is None:
        return "is missing"
    if not size:
        return "is empty (0 bytes)"
    try:
        found = store.parquet_rows(path)
    except StoreUnreachable:  # an outage that outlasted the retry says so itself
        raise
    except PainsearchError as exc:
        cause = exc.__cause__ or exc
        return f"is cut short or not Parquet ({size} bytes; reading its footer: {str(cause).splitlines()[0][:120]})"
    return None if found == rows else f"holds {found} rows where its record says {rows}"


def check_shards(uri: str, endpoint: str | None = None) -> dict[str, Any]:
    """The manifest, once every shard file it lists has been read back (its footer) and found whole; otherwise one
    sentence naming the damaged files and the fix."""
    store = open_store(uri, endpoint)
    manifest = read_manifest(store)
    bad = [f"{f['path']} {problem}" for f in manifest["files"]
           if (problem := shard_problem(store, store.path(f["path"]), int(f["rows"])))]
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise PainsearchError(f"{store.uri} has damaged shard files: {'; '.join(bad[:3])}{more}; run `painsearch data "
                              f"prepare` again with the same config and --out {store.uri}: it redoes those chunks.")
    return manifest


def shard_files(uri: str, endpoint: str | None = None) -> tuple[Store, list[str]]:
    store = open_store(uri, endpoint)
    manifest = read_manifest(store)
    return store, [store.path(f["path"]) for f in manifest["files"]]


def read_table(uri: str, endpoint: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """All rows of a finished shard set, in-process (for tests, analysis and small sets)."""
    store, files = shard_files(uri, endpoint)
    if not files:
        return SCHEMA.empty_table()
    tables = [store.read_parquet(f, columns) for f in files]  # through the store's retry: an outage waits
    return pa.concat_tables(tables)


def open_dataset(uri: str, endpoint: str | None = None, columns: list[str] | None = None):
    """A finished shard set as a Ray Dataset (streamed from local disk or S3)."""
    import ray.data

    store, files = shard_files(uri, endpoint)
    if not files:
        raise PainsearchError(f"{uri} holds no rows (every input was rejected); see {REPORT} there for the reasons.")
    ds = ray.data.read_parquet(files, filesystem=store.fs, partitioning=None)
    return ds.select_columns(columns) if columns else ds


def read_rows(uri: str, endpoint: str | None, ids: set[str] | list[str], columns: list[str]) -> pa.Table:
    """The rows whose `image_id` is in `ids`: `columns` plus `image_id`, sorted by `image_id`.

    Folds, predictions and explanations name images by id; this is the one place that maps ids back to rows."""
    import pyarrow.compute as pc

    table = read_table(uri, endpoint, columns=list(dict.fromkeys([*columns, *ID_COLUMNS])))
    keys = pa.array(image_ids(*(table.column(c).to_pylist() for c in ID_COLUMNS)), pa.string())
    table = table.select(columns).append_column("image_id", keys)
    table = table.filter(pc.is_in(keys, value_set=pa.array(sorted(ids), pa.string())))
    return table.sort_by("image_id")


def read_meta(uri: str, endpoint: str | None = None):
    """Every row's metadata without the images, with its `image_id`: a pandas DataFrame."""
    df = read_table(uri, endpoint, columns=META_COLUMNS).to_pandas()
    df.insert(0, "image_id", image_ids(*(df[c] for c in ID_COLUMNS)))
    return df
