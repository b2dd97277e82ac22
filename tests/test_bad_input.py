"""Bad input that used to end a run or pass silently: each is refused in one sentence or listed with its reason,
and the rest of the run goes on."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.config import prepare_config
from pipelines.errors import PainsearchError
from pipelines.shards.prepare import prepare
from pipelines.shards.read import read_table
from pipelines.shards.schema import MANIFEST, REPORT


def _manifest(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "subject", "label", "level", *(["dataset"] if any(
            "dataset" in r for r in rows) else [])])
        writer.writeheader()
        writer.writerows([{"level": "", **r} for r in rows])
    return path


def _prepare(manifest: Path, out: Path, **more) -> dict:
    cfg = prepare_config({"sources": {"manifest": str(manifest)}, "out": str(out), "engine": "local",
                          "preprocess": {"size": 32, "background": "grabcut"}, **more})
    prepare(cfg, log=lambda m: None)
    return json.loads((out / REPORT).read_text())


def _reasons(report: dict) -> dict[str, str]:
    return {r["input"]: r["reason"] for r in report["rejected"]}


@pytest.fixture
def a_face(tiny_phantom) -> bytes:
    """A phantom face MTCNN finds."""
    return next((tiny_phantom / "delaware" / "images").glob("*.jpg")).read_bytes()


def test_images_too_small_to_search_for_a_face_are_listed(tmp_path, monkeypatch, a_face):
    """MTCNN raises inside torch.cat on a short side under about 20 px (also after the detection downscale):
    such images are rejected with their reason, and the run goes on."""
    monkeypatch.setenv("PAINSEARCH_SUBJECT_KEY", "k" * 32)
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / "img" / "tiny.png")
    Image.fromarray(rng.integers(0, 255, (70, 4000, 3), dtype=np.uint8)).save(folder / "img" / "strip.png")
    (folder / "img" / "face.jpg").write_bytes(a_face)
    manifest = _manifest(folder, [{"path": "img/tiny.png", "subject": "a", "label": "pain"},
                                  {"path": "img/strip.png", "subject": "a", "label": "pain"},
                                  {"path": "img/face.jpg", "subject": "b", "label": "pain"}])
    report = _prepare(manifest, tmp_path / "out")
    reasons = _reasons(report)
    assert "12 x 12 px" in reasons["img/tiny.png"] and "too small" in reasons["img/tiny.png"]
    assert "too small" in reasons["img/strip.png"]
    assert report["rows"] == 1 and read_table(str(tmp_path / "out")).num_rows == 1


def test_paths_that_leave_the_source_folder_are_refused(tmp_path, monkeypatch, a_face):
    """Manifest (and ratings) paths are confined to their folder: `../` and absolute paths are refused naming the
    row, with the same words whether or not a file is there, unless the user opts out."""
    monkeypatch.setenv("PAINSEARCH_SUBJECT_KEY", "k" * 32)
    outside = tmp_path / "other"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(a_face)
    folder = tmp_path / "set"
    manifest = _manifest(folder, [{"path": "../other/x.jpg", "subject": "a", "label": "pain"},
                                  {"path": "../other/missing.jpg", "subject": "a", "label": "pain"},
                                  {"path": str(outside / "x.jpg"), "subject": "b", "label": "pain"}])
    report = _prepare(manifest, tmp_path / "out")
    reasons = _reasons(report)
    assert len(reasons) == 3 and report["rows"] == 0
    assert reasons["../other/x.jpg"] == reasons["../other/missing.jpg"].replace("line 3", "line 2")
    assert "line 2" in reasons["../other/x.jpg"] and "the path leaves" in reasons["../other/x.jpg"]
    assert "does not exist" not in reasons["../other/missing.jpg"]
    opted = _prepare(manifest, tmp_path / "out2", allow_outside_paths=True)
    assert opted["rows"] == 1  # the same file twice: the second is a duplicate


def test_a_manifests_dataset_is_a_plain_pain_db_name(tmp_path, a_face):
    """A manifest's `dataset` names a folder of the shards: a path there would write outside --out, and the CP
    set's name would slip faces into the external test set; each such row is refused, naming the line."""
    from pipelines.sources import read_source

    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "face.jpg").write_bytes(a_face)
    rows = [{"path": "img/face.jpg", "subject": "a", "label": "pain", "dataset": d}
            for d in ("x/../../../escaped", "..", "cppain", "my set", "Delaware", "own-data_2", "CPPain")]
    listing = read_source("manifest", _manifest(folder, rows))
    assert sorted(r.dataset for r in listing.records) == ["delaware", "own-data_2"]  # keys are lower case
    reasons = [r.reason for r in listing.rejected]
    assert len(reasons) == 5 and all("dataset" in r for r in reasons), reasons
    assert "line 2" in reasons[0] and "not a plain name" in reasons[0] and "--cppain" in reasons[2]


def test_a_manifest_with_a_column_twice_is_refused(tmp_path):
    from pipelines.sources import read_source

    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "manifest.csv").write_text("path,subject,label,label\nimg/a.jpg,s1,pain,no pain\n")
    with pytest.raises(PainsearchError, match="label more than once"):
        read_source("manifest", folder / "manifest.csv")


def test_ratings_paths_are_confined_too(tiny_phantom, tmp_path):
    from pipelines.sources import read_source

    root = tmp_path / "cp"
    shutil.copytree(tiny_phantom / "cppain", root)
    ratings = (root / "ratings.csv").read_text().splitlines()
    first = ratings[1].split(",")[0]
    ratings[1] = ratings[1].replace(first, "../" + first, 1)
    (root / "ratings.csv").write_text("\n".join(ratings) + "\n")
    listing = read_source("cppain", root)
    assert any(r.rel == "../" + first and "the path leaves" in r.reason for r in listing.rejected)


@pytest.mark.parametrize("level", ["-1", "nan", "-0.5"])
def test_a_negative_or_missing_pain_level_is_refused_not_read_as_no_pain(tiny_phantom, tmp_path, level):
    from pipelines.sources import read_source

    root = tmp_path / "unbc"
    shutil.copytree(tiny_phantom / "unbc", root)
    label = sorted((root / "Frame_Labels" / "PSPI").rglob("*_facs.txt"))[3]
    label.write_text(f"{level}\n")
    listing = read_source("unbc", root)
    assert any("PSPI" in r.reason and level in r.reason for r in listing.rejected)
    assert not any(r.path.endswith(label.name.replace("_facs.txt", ".png")) for r in listing.records)
    manifest = _manifest(tmp_path / "m", [{"path": "x.png", "subject": "a", "label": "", "level": level}])
    Image.new("RGB", (40, 40)).save(tmp_path / "m" / "x.png")
    refused = read_source("manifest", manifest)
    assert not refused.records and "level" in refused.rejected[0].reason


def test_an_out_of_range_mintpain_level_is_refused(tiny_phantom, tmp_path):
    from pipelines.sources import read_source

    root = tmp_path / "mint"
    shutil.copytree(tiny_phantom / "mintpain", root)
    sweep = next(p for p in root.rglob("*_Label*") if p.is_dir())
    bad = sweep.with_name(sweep.name.rsplit("_Label", 1)[0] + "_Label9")
    sweep.rename(bad)
    listing = read_source("mintpain", root)
    assert any("Label9" in r.reason and "0..4" in r.reason for r in listing.rejected)
    assert not any(bad.name in r.path for r in listing.records)


def test_duplicate_ratings_by_one_rater_are_refused_and_counted(tiny_phantom, tmp_path):
    from pipelines.sources import read_source

    root = tmp_path / "cp"
    shutil.copytree(tiny_phantom / "cppain", root)
    lines = (root / "ratings.csv").read_text().splitlines()
    (root / "ratings.csv").write_text("\n".join([*lines, lines[1]]) + "\n")  # the first rating again
    image = lines[1].split(",")[0]
    listing = read_source("cppain", root)
    assert any(r.rel == image and "rated twice by rater" in r.reason for r in listing.rejected)
    assert image not in {r.rel for r in listing.records}


def test_ratings_ids_are_text_and_an_empty_one_is_refused(tiny_phantom, tmp_path):
    """`007` stays `007` whatever the header's case (and with an empty cell elsewhere in its column), and a row
    with an empty subject is refused naming its line, instead of becoming the subject 'nan' that merges people."""
    import pandas as pd

    from pipelines.sources.cppain import read_ratings

    source = pd.read_csv(tiny_phantom / "cppain" / "ratings.csv", dtype=str)
    table = source.copy()
    table["subject"] = "007"
    table = table.rename(columns={"subject": "Subject", "rater": "RATER"})
    table.to_csv(tmp_path / "upper.csv", index=False)
    assert set(read_ratings(tmp_path / "upper.csv")["subject"]) == {"007"}
    table.loc[3, "Subject"] = ""
    table.to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(PainsearchError, match=r"empty id \(first at line 5: subject\)"):
        read_ratings(tmp_path / "empty.csv")


def test_a_ratings_file_naming_a_column_twice_is_refused(tiny_phantom, tmp_path):
    """pandas renames a repeated header (au4, au4.1) and would read the first silently: the header is read raw."""
    from pipelines.sources.cppain import read_ratings

    lines = (tiny_phantom / "cppain" / "ratings.csv").read_text().splitlines()
    twice = [lines[0] + ",au4"] + [line + ",0" for line in lines[1:]]
    (tmp_path / "twice.csv").write_text("\n".join(twice) + "\n")
    with pytest.raises(PainsearchError, match="au4 more than once"):
        read_ratings(tmp_path / "twice.csv")


def test_one_name_in_two_unicode_forms_is_one_person():
    import unicodedata

    from pipelines.privacy import pseudonym

    name = "Jos\u00e9 Mu\u00f1oz"
    assert unicodedata.normalize("NFD", name) != name
    assert pseudonym(b"k" * 32, "cppain", unicodedata.normalize("NFD", name)) == pseudonym(b"k" * 32, "cppain", name)


@pytest.mark.parametrize("key", ["short-key" + " " * 20, "\u00a0\u2003" * 10, "\u3000" * 8 + "abcdef" + "\u2003" * 8])
def test_a_short_key_padded_with_spaces_of_any_kind_is_refused(monkeypatch, key):
    from pipelines.privacy import load_key

    monkeypatch.setenv("PAINSEARCH_SUBJECT_KEY", key)
    with pytest.raises(PainsearchError, match="blank|shorter than"):
        load_key()


def test_a_subject_key_of_spaces_is_refused(monkeypatch):
    from pipelines.privacy import load_key

    monkeypatch.setenv("PAINSEARCH_SUBJECT_KEY", " " * 40)
    with pytest.raises(PainsearchError, match="blank"):
        load_key()


def test_only_image_formats_a_face_set_uses_are_decoded(tmp_path):
    """Pillow opens dozens of formats (EPS would go to Ghostscript): only a face data set's are decoded, and the
    pixel limit is this call's, not the process's."""
    from PIL import Image as PILImage

    from pipelines.errors import Rejection
    from pipelines.preprocess.decode import ACCEPTED, decode

    before = PILImage.MAX_IMAGE_PIXELS
    for fmt in ("GIF", "ICO", "PPM", "TGA"):
        buf = tmp_path / f"x.{fmt.lower()}"
        PILImage.new("RGB", (40, 40), (10, 200, 30)).save(buf, format=fmt)
        with pytest.raises(Rejection, match=f"{fmt} image.*expected one of"):
            decode(buf.read_bytes(), 1_000_000)
    for fmt in ACCEPTED:
        buf = tmp_path / f"ok.{fmt.lower()}"
        PILImage.new("RGB", (40, 40), (10, 200, 30)).save(buf, format=fmt)
        assert decode(buf.read_bytes(), 1_000_000).shape == (40, 40, 3)
    with pytest.raises(Rejection, match="decompression bomb"):
        decode((tmp_path / "ok.png").read_bytes(), 1_000)
    assert PILImage.MAX_IMAGE_PIXELS == before


def test_a_failed_grabcut_is_recorded_not_hidden():
    """GrabCut cannot separate a face box too small to seed its model: the image keeps its background, and the
    remover says so, which the row (`background_removed`) and the report (`background_kept`) carry."""
    from pipelines.config import PreprocessConfig
    from pipelines.preprocess.background import background_remover

    remove = background_remover(PreprocessConfig(background="grabcut"))
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    out, removed = remove(img, (15.0, 15.0, 16.0, 16.0))
    assert removed is False and np.array_equal(out, img)
    out, removed = remove(img, (8.0, 8.0, 24.0, 24.0))
    assert removed is True and (out == 255).all(axis=2).any()


def test_rows_and_the_report_say_whether_the_background_was_removed(tiny_shards):
    table = read_table(str(tiny_shards))
    report = json.loads((tiny_shards / REPORT).read_text())
    removed = table.column("background_removed").to_pylist()
    assert report["background_kept"] == removed.count(False) and removed.count(True) > 0


@pytest.mark.parametrize("args, fragment", [
    (["data", "prepare", "--size", "abc", "--out", "x"], "--size"),
    (["search", "run", "--config", "c.yaml", "--num-cpus", "two"], "--num-cpus"),
    (["data", "synth", "x", "--scale", "huge"], "--scale"),
])
def test_a_command_line_type_error_is_one_sentence(args, fragment):
    r = subprocess.run([sys.executable, "-m", "cluster.cli", *args], capture_output=True, text=True, timeout=120)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("painsearch: error:"), r.stderr
    assert fragment in lines[0] and "usage:" not in r.stderr


def test_a_config_that_is_not_utf8_is_one_sentence(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes("data:\n  out: caf\xe9\n".encode("latin-1"))
    r = subprocess.run([sys.executable, "-m", "cluster.cli", "data", "prepare", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "UTF-8" in r.stderr and r.stderr.count("\n") == 1


def test_a_damaged_shard_is_named_by_inspect_and_the_study_and_redone_by_prepare(tiny_phantom, tiny_shards, tmp_path,
                                                                                  capsys):
    """A shard file emptied, and one cut short (as a full disk or a broken copy leaves them): `data inspect` reads
    what it checks and names both, `search run` refuses before it writes anything, and a rerun of `prepare`
    redoes those two chunks, after which the shards read back whole."""
    from conftest import tiny_prepare_config

    from cluster.cli import main

    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    manifest = json.loads((shards / MANIFEST).read_text())
    emptied, cut = (shards / f["path"] for f in manifest["files"][:2])
    emptied.write_bytes(b"")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    assert main(["data", "inspect", str(shards)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{manifest['files'][0]['path']} is empty" in err
    assert f"{manifest['files'][1]['path']} is cut short" in err and "painsearch data prepare" in err
    results = tmp_path / "results"
    smoke = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
    assert main(["search", "run", "--config", str(smoke), "--set", f"shards={shards}",
                 "--storage", str(results)]) == 2
    assert "damaged shard files" in capsys.readouterr().err and not (results / "study.json").exists()
    before = read_table(str(tiny_shards))
    logged: list[str] = []
    prepare(tiny_prepare_config(tiny_phantom, str(shards)), log=logged.append)
    assert any("already done, 2 to do" in m for m in logged), logged
    assert main(["data", "inspect", str(shards)]) == 0
    after = read_table(str(shards))
    assert after.num_rows == before.num_rows and set(after.column("source_sha256").to_pylist()) == set(
        before.column("source_sha256").to_pylist())
