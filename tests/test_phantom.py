import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.phantom.synth import SCALES, TRUTH_FILE, Scale, synth
from pipelines.errors import PainsearchError
from pipelines.labels import facs_score, pspi

MICRO = Scale(1, 1, 3, (160, 120), 1, 1, 2, 1, (200, 120), 1, (120, 160), 1, 1, (160, 120))


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ("prepare.yaml", ".painsearch-phantom")}


def test_deterministic_for_a_seed(tmp_path):
    synth(tmp_path / "a", MICRO, seed=3)
    synth(tmp_path / "b", MICRO, seed=3)
    synth(tmp_path / "c", MICRO, seed=4)
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b
    assert a != c


def test_native_layouts(tiny_phantom):
    root = tiny_phantom
    sc = SCALES["tiny"]
    unbc = sorted((root / "unbc" / "Images").glob("*/*/*.png"))
    assert len(unbc) == sc.unbc_subjects * sc.unbc_sequences * sc.unbc_frames
    first = unbc[0]
    pspi_file = root / "unbc" / "Frame_Labels" / "PSPI" / first.parent.parent.name / first.parent.name / f"{first.stem}_facs.txt"
    assert pspi_file.is_file() and float(pspi_file.read_text()) >= 0
    assert first.stem.startswith(first.parent.name) and first.stem[-3:].isdigit()
    sweeps = sorted((root / "mintpain").glob("Sub* */Annotated_data_Sub*_Trial*/Sub*_Trial*_Sweep*_Label*/RGB/RGB-*.jpg"))
    assert len(sweeps) == sc.mint_subjects * sc.mint_trials * sc.mint_sweeps * sc.mint_frames
    assert Image.open(sweeps[0]).size == sc.mint_size
    with open(root / "delaware" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * sc.delaware_subjects and {r["label"] for r in rows} == {"pain", "no pain"}
    with open(root / "cppain" / "ratings.csv") as f:
        ratings = list(csv.DictReader(f))
    assert {r["rater"] for r in ratings} == {"R1", "R2"}
    assert len(ratings) == 2 * 2 * sc.cp_subjects * sc.cp_videos


def test_labels_follow_the_action_units(tiny_phantom):
    """PSPI files agree with the rendered AUs; pain and no pain both occur, no-pain frames dominate UNBC."""
    with open(tiny_phantom / TRUTH_FILE) as f:
        truth = {r["path"]: r for r in csv.DictReader(f)}
    levels = []
    for path, row in truth.items():
        if row["dataset"] != "unbc":
            continue
        p = Path(path)
        label = tiny_phantom / "unbc" / "Frame_Labels" / "PSPI" / p.parts[2] / p.parts[3] / f"{p.stem}_facs.txt"
        aus = {k: float(v) for k, v in row.items() if k.startswith("AU")}
        assert float(label.read_text()) == pytest.approx(pspi(aus))
        levels.append(pspi(aus))
    share_zero = np.mean(np.array(levels) == 0)
    assert 0.4 < share_zero < 0.95


def test_cp_raters_disagree_a_little(tiny_phantom):
    with open(tiny_phantom / "cppain" / "ratings.csv") as f:
        ratings = list(csv.DictReader(f))
    by_image: dict[str, list[float]] = {}
    for r in ratings:
        by_image.setdefault(r["image"], []).append(facs_score({k.upper(): float(r[k]) for k in ("au4", "au6", "au7", "au9", "au10", "au43")}))
    scores = np.array(list(by_image.values()))
    assert np.corrcoef(scores[:, 0], scores[:, 1])[0, 1] > 0.5  # they agree broadly
    assert (scores[:, 0] != scores[:, 1]).any()  # but not exactly


def test_mtcnn_finds_faces_in_the_phantom(tiny_phantom):
    """The real detector (default settings) finds a face in at least 95 % of phantom images."""
    from facenet_pytorch import MTCNN

    images = sorted(p for p in tiny_phantom.rglob("*") if p.suffix in (".png", ".jpg"))
    sample = images[1::3]  # index 0 is the deliberate black UNBC frame
    mtcnn = MTCNN(keep_all=True, device="cpu")
    found = 0
    for p in sample:
        boxes, probs = mtcnn.detect(Image.open(p).convert("RGB"))
        found += boxes is not None and float(np.max(np.asarray(probs, dtype=float))) >= 0.9
    assert len(sample) >= 40
    assert found / len(sample) >= 0.95, f"found {found} of {len(sample)}"


def test_refuses_a_folder_that_is_not_a_phantom(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(PainsearchError, match="not an earlier phantom"):
        synth(tmp_path, MICRO)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_truth_has_geometry(tiny_phantom):
    with open(tiny_phantom / TRUTH_FILE) as f:
        row = next(csv.DictReader(f))
    geo = json.loads(row["geometry"])
    assert len(geo["landmarks"]) == 5 and set(geo["regions"]) >= {"eyes", "brows", "nose", "mouth"}
