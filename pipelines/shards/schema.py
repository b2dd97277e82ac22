"""The Parquet shard format: the schema, the layout of a shard set, and the ids every stored face is known by.

Layout under the output URI:
  dataset=<name>/part-<chunk>.parquet   rows of one chunk of work (written atomically)
  _chunks/<chunk>.json                  marker: the chunk is complete (rows, rejections)
  _painsearch.json                      the manifest, written last: which shards make the set
  prepare_report.json                   counts per dataset, subject and class; every rejection
Readers trust only files named in `_painsearch.json`, so a killed run is never mistaken for a
finished one; rerunning `prepare` skips chunks whose marker exists.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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
    # False where the background could not be removed (the remover found nothing to separate) or none was asked
    pa.field("background_removed", pa.bool_(), nullable=False),
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


def image_ids(dataset, subject, sequence, frame, source_sha256) -> list[str]:
    """A stable id per stored face (the same from any copy of the shards): what folds and predictions key on.

    Built from pseudonyms and the source hash only, so it reveals no subject id.
    """
    return [hashlib.sha256(f"{d}\x1f{s}\x1f{q}\x1f{int(f)}\x1f{h}".encode()).hexdigest()[:20]
            for d, s, q, f, h in zip(dataset, subject, sequence, frame, source_sha256)]


ID_COLUMNS = ["dataset", "subject", "sequence", "frame", "source_sha256"]


META_COLUMNS = ["label", "pain_level", "dataset", "subject", "sequence", "frame", "source_sha256"]




def subject_groups(dataset, subject) -> list[str]:
    """One key per person: pseudonyms are per dataset, so the same string in two datasets is two people."""
    return [f"{d}/{s}" for d, s in zip(dataset, subject)]
