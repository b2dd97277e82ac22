"""The Parquet shard format: schema, writing one shard, and opening a finished set of shards.

Layout under the output URI:
  dataset=<name>/part-<chunk>.parquet   rows of one chunk of work (written atomically)
  _chunks/<chunk>.json                  marker: the chunk is complete (rows, rejections)
  _painsearch.json                      the manifest, written last: which shards make the set
  prepare_report.json                   counts per dataset, subject and class; every rejection
Readers trust only files named in `_painsearch.json`, so a killed run is never mistaken for a
finished one; rerunning `prepare` skips chunks whose marker exists.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import PainsearchError
from pipelines.storage import Store, open_store

MANIFEST = "_painsearch.json"
REPORT = "prepare_report.json"
CHUNKS = "_chunks"
FORMAT = "painsearch-shards"
FORMAT_VERSION = 1

SCHEMA = pa.schema([
    pa.field("image", pa.binary(), nullable=False),  # PNG of the square, background-removed face (RGB)
    pa.field("label", pa.int8(), nullable=False),  # 0 no pain, 1 pain
    pa.field("pain_level", pa.float32(), nullable=False),  # the source's own intensity
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),  # keyed-HMAC pseudonym
    pa.field("sequence", pa.string(), nullable=False),  # keyed-HMAC pseudonym of the sequence or video
    pa.field("frame", pa.int32(), nullable=False),
    pa.field("landmarks", pa.list_(pa.float32()), nullable=False),  # MTCNN's 5 points, x,y in image pixels
    pa.field("face_confidence", pa.float32(), nullable=False),
    pa.field("source_sha256", pa.string(), nullable=False),
    pa.field("preprocess", pa.string(), nullable=False),  # JSON: settings and version
])


def shard_path(dataset: str, chunk_id: str) -> str:
    return f"dataset={dataset}/part-{chunk_id}.parquet"


def to_parquet(rows: list[dict[str, Any]], metadata: dict[str, str]) -> bytes:
    table = pa.Table.from_pylist(rows, schema=SCHEMA).replace_schema_metadata(
        {**(SCHEMA.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}}
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


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


def shard_files(uri: str, endpoint: str | None = None) -> tuple[Store, list[str]]:
    store = open_store(uri, endpoint)
    manifest = read_manifest(store)
    return store, [store.path(f["path"]) for f in manifest["files"]]


def read_table(uri: str, endpoint: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """All rows of a finished shard set, in-process (for tests, analysis and small sets)."""
    store, files = shard_files(uri, endpoint)
    if not files:
        return SCHEMA.empty_table()
    tables = [pq.read_table(f, filesystem=store.fs, columns=columns) for f in files]
    return pa.concat_tables(tables)


def open_dataset(uri: str, endpoint: str | None = None, columns: list[str] | None = None):
    """A finished shard set as a Ray Dataset (streamed from local disk or S3)."""
    import ray.data

    store, files = shard_files(uri, endpoint)
    if not files:
        raise PainsearchError(f"{uri} holds no rows (every input was rejected); see {REPORT} there for the reasons.")
    ds = ray.data.read_parquet(files, filesystem=store.fs, partitioning=None)
    return ds.select_columns(columns) if columns else ds


def image_ids(dataset, subject, sequence, frame, source_sha256) -> list[str]:
    """A stable id per stored face (the same from any copy of the shards): what folds and predictions key on.

    Built from pseudonyms and the source hash only, so it reveals no subject id.
    """
    import hashlib

    return [hashlib.sha256(f"{d}\x1f{s}\x1f{q}\x1f{int(f)}\x1f{h}".encode()).hexdigest()[:20]
            for d, s, q, f, h in zip(dataset, subject, sequence, frame, source_sha256)]


ID_COLUMNS = ["dataset", "subject", "sequence", "frame", "source_sha256"]


def read_rows(uri: str, endpoint: str | None, ids: set[str] | list[str], columns: list[str]) -> pa.Table:
    """The rows whose `image_id` is in `ids`: `columns` plus `image_id`, sorted by `image_id`.

    Folds, predictions and explanations name images by id; this is the one place that maps ids back to rows."""
    import pyarrow.compute as pc

    table = read_table(uri, endpoint, columns=list(dict.fromkeys([*columns, *ID_COLUMNS])))
    keys = pa.array(image_ids(*(table.column(c).to_pylist() for c in ID_COLUMNS)), pa.string())
    table = table.select(columns).append_column("image_id", keys)
    table = table.filter(pc.is_in(keys, value_set=pa.array(sorted(ids), pa.string())))
    return table.sort_by("image_id")


META_COLUMNS = ["label", "pain_level", "dataset", "subject", "sequence", "frame", "source_sha256"]


def read_meta(uri: str, endpoint: str | None = None):
    """Every row's metadata without the images, with its `image_id`: a pandas DataFrame."""
    df = read_table(uri, endpoint, columns=META_COLUMNS).to_pandas()
    df.insert(0, "image_id", image_ids(*(df[c] for c in ID_COLUMNS)))
    return df
