import csv
import shutil
from pathlib import Path

import pytest

from pipelines.sources import ADAPTERS, read_source
from pipelines.phantom.synth import SCALES
from pipelines.errors import PainsearchError
from pipelines.labels import PAIN, facs_score

from pipelines.phantom.synth import sources as phantom_sources

TINY = SCALES["tiny"]
EXPECTED_COUNTS = {
    "unbc": TINY.unbc_subjects * TINY.unbc_sequences * TINY.unbc_frames,
    "mintpain": TINY.mint_subjects * TINY.mint_trials * TINY.mint_sweeps * TINY.mint_frames,
    "manifest": 2 * TINY.delaware_subjects,
    "cppain": TINY.cp_images,
}


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_each_adapter_reads_its_phantom(kind, tiny_phantom):
    listing = read_source(kind, phantom_sources(tiny_phantom)[kind])
    assert len(listing.records) == EXPECTED_COUNTS[kind]
    assert not listing.rejected
    assert {r.label for r in listing.records} == {0, 1}
    for r in listing.records:
        assert Path(r.path).is_file()
        assert r.label == (PAIN if r.pain_level > 0 else 0)


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_wrong_layout_names_the_expected_one(kind, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    target = tmp_path / "x.csv" if kind == "manifest" else tmp_path
    if kind == "manifest":
        target.write_text("file,who\na.png,1\n")
    with pytest.raises(PainsearchError) as err:
        read_source(kind, target)
    msg = str(err.value)
    assert "\n" not in msg
    if kind == "manifest":
        assert "path, subject" in msg and "found: file, who" in msg
    else:
        assert "expected" in msg or "does not look like" in msg
        assert "photos/" in msg and "notes.txt" in msg


def test_unbc_nested_mirror(tiny_phantom, tmp_path):
    root = tmp_path / "unbc"
    shutil.copytree(tiny_phantom / "unbc" / "Images", root / "Images" / "Images")
    shutil.copytree(tiny_phantom / "unbc" / "Frame_Labels", root / "Frame_Labels" / "Frame_Labels")
    listing = read_source("unbc", root)
    assert len(listing.records) == EXPECTED_COUNTS["unbc"]


def test_unbc_label_without_image_and_image_without_label(tiny_phantom, tmp_path):
    root = tmp_path / "unbc"
    shutil.copytree(tiny_phantom / "unbc", root)
    frames = sorted((root / "Images").glob("*/*/*.png"))
    frames[1].unlink()  # its label file stays: a label without an image
    subject, seq = frames[2].parent.parent.name, frames[2].parent.name
    (root / "Frame_Labels" / "PSPI" / subject / seq / f"{frames[2].stem}_facs.txt").unlink()
    listing = read_source("unbc", root)
    reasons = {r.rel: r.reason for r in listing.rejected}
    assert any("label has no image" in v for v in reasons.values())
    assert reasons[str(frames[2].relative_to(root))].startswith("image has no label")
    assert len(listing.records) == EXPECTED_COUNTS["unbc"] - 2


def test_mintpain_sweep_without_label(tiny_phantom, tmp_path):
    root = tmp_path / "mint"
    shutil.copytree(tiny_phantom / "mintpain", root)
    sweep = sorted(root.glob("Sub01*/Annotated_data_*/*"))[0]
    sweep.rename(sweep.with_name(sweep.name.split("_Label")[0]))
    listing = read_source("mintpain", root)
    assert sum("no _Label" in r.reason for r in listing.rejected) == TINY.mint_frames
    assert all(r.subject.startswith("Sub") and " " not in r.subject for r in listing.records)


def test_manifest_paths_relative_and_bad_rows(tiny_phantom, tmp_path):
    root = tmp_path / "dela"
    shutil.copytree(tiny_phantom / "delaware", root)
    with open(root / "manifest.csv", "a", newline="") as f:
        w = csv.writer(f)
        w.writerow(["images/missing.jpg", "F999", "pain", "1"])
        w.writerow(["images/F001_pain.jpg", "F001", "maybe", ""])
        w.writerow(["images/F001_neutral.jpg", "F001", "pain", "0"])
    listing = read_source("manifest", root / "manifest.csv")
    reasons = " | ".join(r.reason for r in listing.rejected)
    assert "does not exist" in reasons and "'maybe'" in reasons and "contradicts" in reasons
    assert listing.records[0].dataset == "dela"  # named after the manifest's folder
    assert Path(listing.records[0].path).is_absolute()


def test_cppain_consensus_and_missing_pieces(tiny_phantom, tmp_path):
    root = tmp_path / "cp"
    shutil.copytree(tiny_phantom / "cppain", root)
    with open(root / "ratings.csv") as f:
        rows = list(csv.DictReader(f))
    listing = read_source("cppain", root)
    for r in listing.records:
        mine = [x for x in rows if x["image"] == r.rel]
        scores = [facs_score({k.upper(): float(x[k]) for k in ("au4", "au6", "au7", "au9", "au10", "au43")}) for x in mine]
        assert r.label == int(any(s > 0 for s in scores))
    (root / "images" / "P001_V01_pain.png").unlink()
    shutil.copy(root / "images" / "P002_V01_pain.png", root / "images" / "unrated.png")
    listing = read_source("cppain", root)
    reasons = {r.rel: r.reason for r in listing.rejected}
    assert "label has no image" in reasons["images/P001_V01_pain.png"]
    assert "image has no label" in reasons["images/unrated.png"]


def test_cppain_bad_ratings_file(tiny_phantom, tmp_path):
    root = tmp_path / "cp"
    shutil.copytree(tiny_phantom / "cppain", root)
    text = (root / "ratings.csv").read_text().splitlines()
    header = text[0].replace(",wong_baker", "")
    (root / "ratings.csv").write_text("\n".join([header] + [",".join(line.split(",")[:-1]) for line in text[1:]]))
    with pytest.raises(PainsearchError, match="lacks the column.*wong_baker"):
        read_source("cppain", root)
    lines = text[:]
    parts = lines[1].split(",")
    parts[5] = "9"
    lines[1] = ",".join(parts)
    (root / "ratings.csv").write_text("\n".join(lines))
    with pytest.raises(PainsearchError, match="out-of-range.*line 2"):
        read_source("cppain", root)
