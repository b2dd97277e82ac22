"""A seeded fuzz run of `prepare` over broken and odd inputs (pipelines/phantom/fuzz.py), on both engines.

The property: the command exits 0, or 2 with one sentence; every input is a row of the shards or a listed
rejection, never both, never neither. `benchmarks/reliability.py` runs the long version."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.phantom.fuzz import fuzz_manifest

ROOT = Path(__file__).resolve().parent.parent


def check_prepare(manifest: Path, out: Path, engine: str, env: dict) -> dict:
    """Run `painsearch data prepare` over a fuzz manifest and check the property; returns the counts."""
    from pipelines.shards.read import read_table
    from pipelines.shards.schema import REPORT

    cmd = [sys.executable, "-m", "cluster.cli", "data", "prepare", "--manifest", str(manifest), "--out", str(out),
           "--engine", engine, "--background", "grabcut", "--size", "32", "--chunk-size", "8"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert r.returncode in (0, 2), r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if r.returncode == 2:
        errors = [line for line in r.stderr.splitlines() if line.startswith("painsearch: error:")]
        assert len(errors) == 1, r.stderr
        return {"inputs": 0, "rows": 0, "rejected": 0, "exit": 2}
    with open(manifest, newline="", encoding="utf-8") as f:
        inputs = [row["path"] for row in csv.DictReader(f)]
    report = json.loads((out / REPORT).read_text())
    rejected = [r["input"] for r in report["rejected"]]
    table = read_table(str(out), columns=["source_sha256"])
    stored = table.column("source_sha256").to_pylist()
    assert len(stored) == len(set(stored)), "an input became two rows"
    seen_sha: set[str] = set()
    for n, rel in enumerate(inputs, start=2):
        refused = sum(1 for x in rejected if x == rel or (not rel and x.startswith(f"manifest.csv line {n} ")))
        path = manifest.parent / rel
        sha = None
        if rel and path.is_file() and not path.is_symlink():
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
        kept = sha is not None and sha in stored and sha not in seen_sha and not refused
        if kept:
            seen_sha.add(sha)
        assert refused + kept == 1, f"input {rel!r} (line {n}): refused {refused} time(s), a row: {kept}"
    assert len(stored) == len(seen_sha), "a row no input accounts for"
    return {"inputs": len(inputs), "rows": len(stored), "rejected": len(rejected), "exit": 0}


@pytest.mark.parametrize("engine", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_prepare_over_broken_and_odd_inputs(engine, tiny_phantom, tmp_path):
    faces = [p.read_bytes() for p in sorted((tiny_phantom / "delaware" / "images").glob("*.jpg"))[:6]]
    manifest = fuzz_manifest(tmp_path, seed=7 if engine == "local" else 8, n=48, faces=faces)
    env = {**os.environ, "PAINSEARCH_SUBJECT_KEY": "f" * 32}
    counts = check_prepare(manifest, tmp_path / "out", engine, env)
    assert counts["exit"] == 0 and counts["rows"] >= 1 and counts["rejected"] >= 30
