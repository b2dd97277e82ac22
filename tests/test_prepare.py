import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.config import prepare_config
from pipelines.errors import PainsearchError
from pipelines.shards.prepare import prepare
from pipelines.shards.read import read_meta, read_rows, read_table
from pipelines.shards.schema import CHUNKS, MANIFEST, REPORT, SCHEMA

from conftest import tiny_prepare_config

QUIET = lambda m: None  # noqa: E731


def rows_by_source(uri):
    t = read_table(str(uri)).to_pylist()
    return {r["source_sha256"]: r for r in t}


def test_shards_follow_the_schema(tiny_shards):
    table = read_table(str(tiny_shards))
    assert table.schema.remove_metadata() == SCHEMA.remove_metadata()
    parts = sorted(p.relative_to(tiny_shards).parts[0] for p in tiny_shards.glob("dataset=*/*.parquet"))
    assert set(parts) == {"dataset=cppain", "dataset=delaware", "dataset=mintpain", "dataset=unbc"}
    first = table.slice(0, 1).to_pylist()[0]
    img = Image.open(__import__("io").BytesIO(first["image"]))
    assert img.size == (32, 32) and img.mode == "RGB"
    assert len(first["landmarks"]) == 10
    assert json.loads(first["preprocess"])["background"] == "grabcut"
    meta = pq.read_schema(next(tiny_shards.glob("dataset=unbc/*.parquet"))).metadata
    assert b"painsearch.preprocess" in meta


def test_rows_by_image_id(tiny_shards):
    meta = read_meta(str(tiny_shards))
    want = meta.sample(7, random_state=0)
    rows = read_rows(str(tiny_shards), None, set(want["image_id"]), ["label", "dataset"])
    assert rows.column_names == ["label", "dataset", "image_id"]
    assert rows.column("image_id").to_pylist() == sorted(want["image_id"])
    got = {r["image_id"]: (r["label"], r["dataset"]) for r in rows.to_pylist()}
    assert got == {r.image_id: (r.label, r.dataset) for r in want.itertuples()}
    assert read_rows(str(tiny_shards), None, {"no-such-id"}, ["label"]).num_rows == 0


def test_report_counts_and_pseudonyms(tiny_shards, tiny_phantom):
    report = json.loads((tiny_shards / REPORT).read_text())
    table = read_table(str(tiny_shards)).to_pandas()
    assert report["rows"] == len(table)
    for ds, c in report["datasets"].items():
        sub = table[table.dataset == ds]
        assert c["pain"] == int((sub.label == 1).sum()) and c["no_pain"] == int((sub.label == 0).sum())
        assert c["subjects"] == sub.subject.nunique()
        for subject, counts in report["subjects"][ds].items():
            assert counts["pain"] + counts["no_pain"] == int((sub.subject == subject).sum())
    # video sources: at most 4 frames per subject and class were sampled
    unbc = table[table.dataset == "unbc"]
    assert unbc.groupby(["subject", "label"]).size().max() <= 4
    raw_ids = {p.name for p in (tiny_phantom / "unbc" / "Images").iterdir()} | {"Sub01", "P001", "F001"}
    text = (tiny_shards / REPORT).read_text() + (tiny_shards / MANIFEST).read_text()
    assert not any(r in set(table.subject) | set(table.sequence) for r in raw_ids)
    assert all(s.startswith("s") and len(s) == 13 for s in table.subject)
    assert "Sub01" not in json.dumps(report["subjects"]) and "P001" not in text.split('"rejected"')[0]


def make_broken_manifest(tiny_phantom: Path, root: Path) -> Path:
    """A manifest source with every kind of bad file next to good ones."""
    root.mkdir()
    good = sorted((tiny_phantom / "delaware" / "images").glob("*.jpg"))[:4]
    rows = []
    for i, g in enumerate(good):
        shutil.copy(g, root / g.name)
        rows.append(f"{g.name},G{i},{'pain' if 'pain' in g.name and 'neutral' not in g.name else 'no pain'}")
    shutil.copy(good[0], root / "copy_of_first.jpg")
    rows.append("copy_of_first.jpg,G9,no pain")
    data = good[1].read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("not a picture")
    (root / "random.png").write_bytes(os.urandom(3000))
    Image.fromarray((np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)).save(root / "noface.png")
    for name in ("truncated.jpg", "empty.png", "notes.png", "random.png", "noface.png"):
        rows.append(f"{name},B1,pain")
    rows.append("gone.png,B2,pain")
    (root / "list.csv").write_text("path,subject,label\n" + "\n".join(rows) + "\n")
    return root / "list.csv"


def test_bad_inputs_are_reported_and_good_ones_kept(tiny_phantom, tmp_path, monkeypatch):
    monkeypatch.setenv("PAINSEARCH_SUBJECT_KEY", "a-test-key-of-enough-length")
    manifest = make_broken_manifest(tiny_phantom, tmp_path / "mixed")
    cfg = prepare_config({"sources": {"manifest": str(manifest)}, "out": str(tmp_path / "out"), "engine": "local",
                          "preprocess": {"size": 32, "background": "none"}})
    report = prepare(cfg, log=QUIET)
    reasons = {r["input"]: r["reason"] for r in report["rejected"]}
    assert report["rows"] == 4
    assert reasons["copy_of_first.jpg"].startswith("duplicate file")
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["empty.png"].startswith("empty file")
    assert reasons["notes.png"].startswith("not an image")
    assert reasons["random.png"].startswith("not an image")
    assert "no face" in reasons["noface.png"]
    assert "does not exist" in reasons["gone.png"]
    assert "a-test-key" not in (tmp_path / "out" / REPORT).read_text()


def test_rerun_skips_finished_work(tiny_phantom, tiny_shards):
    logs = []
    before = rows_by_source(tiny_shards)
    prepare(tiny_prepare_config(tiny_phantom, str(tiny_shards)), log=logs.append)
    assert "0 to do" in next(line for line in logs if "chunks;" in line)
    assert rows_by_source(tiny_shards).keys() == before.keys()


def test_killed_run_is_never_mistaken_for_finished_and_resumes(tiny_phantom, tiny_shards, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cluster.cli", "data", "prepare", "--config", str(tiny_phantom / "prepare.yaml"),
           "--out", str(out), "--engine", "local", "--background", "grabcut", "--size", "32", "--frames", "4",
           "--chunk-size", "4"]
    # a session of its own: the kill takes the run's worker processes with it, so none finishes a chunk after it
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (out / CHUNKS).exists() or len(list((out / CHUNKS).glob("*.json"))) < 2:
        assert proc.poll() is None and time.time() < deadline, "prepare ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / MANIFEST).exists()
    with pytest.raises(PainsearchError, match="no finished painsearch shards"):
        read_table(str(out))
    done = len(list((out / CHUNKS).glob("*.json")))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{done} already done" in result.stdout, result.stdout
    resumed, full = rows_by_source(out), rows_by_source(tiny_shards)
    assert resumed.keys() == full.keys()
    for k, row in full.items():
        assert resumed[k]["image"] == row["image"] and resumed[k]["subject"] == row["subject"]


def test_missing_key_for_real_data(tiny_phantom, tmp_path):
    src = tmp_path / "dela"
    shutil.copytree(tiny_phantom / "delaware", src)
    (src / ".painsearch-phantom").unlink()
    cfg = prepare_config({"sources": {"manifest": str(src / "manifest.csv")}, "out": str(tmp_path / "o"), "engine": "local",
                          "preprocess": {"background": "none"}})
    with pytest.raises(PainsearchError, match="PAINSEARCH_SUBJECT_KEY"):
        prepare(cfg, log=QUIET)
    assert not (tmp_path / "o" / MANIFEST).exists()


def test_the_demo_key_applies_only_to_what_the_phantom_rendered(tiny_phantom, tmp_path):
    """A phantom marker beside other files (a real face added, a marker copied into real data) does not switch
    to the public demo key: prepare asks for a key. Untouched phantom data uses it, and prepare says so."""
    src = tmp_path / "dela"
    shutil.copytree(tiny_phantom / "delaware", src)
    cfg = prepare_config({"sources": {"manifest": str(src / "manifest.csv")}, "out": str(tmp_path / "o"),
                          "engine": "local", "preprocess": {"background": "none"}})
    logs = []
    prepare(cfg.model_copy(update={"out": str(tmp_path / "phantom-out")}), log=logs.append)
    assert any("public demo key" in line for line in logs)
    face = next(src.rglob("*.jpg"))
    (face.parent / "Jane Doe.jpg").write_bytes(face.read_bytes()[:-1] + b"\x00")
    with pytest.raises(PainsearchError, match="PAINSEARCH_SUBJECT_KEY"):
        prepare(cfg, log=QUIET)
    assert not (tmp_path / "o" / MANIFEST).exists()


def test_a_corrected_manifest_row_is_redone_on_a_rerun(tiny_phantom, tmp_path, monkeypatch):
    """A chunk's identity covers every field of its rows: a pain level corrected in the manifest makes the rerun
    redo that chunk, and the shards hold the new level (not the stale one beside a summary showing the new)."""
    monkeypatch.setenv("PAINSEARCH_SUBJECT_KEY", "k" * 32)
    src = tmp_path / "dela"
    shutil.copytree(tiny_phantom / "delaware", src)
    cfg = prepare_config({"sources": {"manifest": str(src / "manifest.csv")}, "out": str(tmp_path / "o"),
                          "engine": "local", "chunk_size": 4, "preprocess": {"background": "none"}})
    prepare(cfg, log=QUIET)
    lines = (src / "manifest.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.endswith(",pain,1"))
    lines[row] = lines[row][: -len("1")] + "3"
    (src / "manifest.csv").write_text("\n".join(lines) + "\n")
    logs = []
    prepare(cfg, log=logs.append)
    planned = next(line for line in logs if "chunks;" in line)
    assert " 1 to do" in planned, planned
    levels = read_table(str(tmp_path / "o"), columns=["pain_level"]).column("pain_level").to_pylist()
    assert levels.count(3.0) == 1


def test_u2net_without_weights_stops_before_any_work(tiny_phantom, tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "empty"))
    cfg = tiny_prepare_config(tiny_phantom, str(tmp_path / "o"), preprocess={"background": "u2net_human_seg"})
    with pytest.raises(PainsearchError, match="u2net_human_seg.onnx"):
        prepare(cfg, log=QUIET)
    assert not (tmp_path / "o" / CHUNKS).exists()


def test_ray_data_path_gives_the_same_rows(ray_local, tiny_phantom, tiny_shards, tmp_path):
    cfg = tiny_prepare_config(tiny_phantom, str(tmp_path / "ray"), engine="ray", workers=2)
    prepare(cfg, log=QUIET)
    via_ray, local = rows_by_source(tmp_path / "ray"), rows_by_source(tiny_shards)
    assert via_ray.keys() == local.keys()
    for k, row in local.items():
        assert via_ray[k] == row


def test_open_as_ray_dataset(ray_local, tiny_shards):
    from pipelines.shards.read import open_dataset

    ds = open_dataset(str(tiny_shards), columns=["label", "dataset"])
    assert ds.count() == read_table(str(tiny_shards)).num_rows
