"""The PAIN-DB breakdown of a finished shard set: the paper's Table 2, from the manifest, once every shard file it
lists has been read back whole."""

from __future__ import annotations

from typing import Any

from pipelines.shards.read import check_shards
from pipelines.sources.base import CP_PAIN


def breakdown(uri: str, endpoint: str | None = None) -> dict[str, Any]:
    manifest = check_shards(uri, endpoint)
    rows = []
    for ds, c in sorted(manifest["datasets"].items()):
        rows.append({
            "dataset": ds, "subjects": c["subjects"], "levels": len([v for v in c["levels"] if v > 0]),
            "no_pain": c["no_pain"], "pain": c["pain"], "total": c["rows"],
        })
    pain_db = [r for r in rows if r["dataset"] not in CP_PAIN]  # CP-PAIN is the external test set
    total = {k: sum(r[k] for r in pain_db) for k in ("subjects", "no_pain", "pain", "total")}
    return {"datasets": rows, "pain_db": total, "preprocess": manifest["preprocess"]}
