"""Analysis: metrics against known values, `painsearch analyze` on the smoke study, the report in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.comparisons import compare, holm
from analysis.face_space import CANON, TEMPLATE, face_oval, region_share, to_canonical
from analysis.intervals import bootstrap_ci
from analysis.scores import metrics_of, roc_auc
from cluster.cli import main


def test_roc_auc_and_confusion_on_known_values():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    df = pd.DataFrame({"label": [0, 0, 1, 1], "prob_0": [0.9, 0.6, 0.65, 0.2], "prob_1": [0.1, 0.4, 0.35, 0.8],
                       "dataset": "d", "subject": ["a", "a", "b", "c"]})
    m = metrics_of(df)
    assert (m["cm_00"], m["cm_01"], m["cm_10"], m["cm_11"]) == (2, 0, 1, 1)
    assert m["accuracy"] == pytest.approx(0.75) and m["recall_pain"] == pytest.approx(0.5)


def test_bootstrap_interval_resamples_subjects():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    p1 = np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1)  # about 80 % right
    df = pd.DataFrame({"label": y, "prob_1": p1, "prob_0": 1 - p1, "dataset": "d", "subject": [f"s{i // 10}" for i in range(n)]})
    est = metrics_of(df)["accuracy"]
    lo, hi = bootstrap_ci(df, ("accuracy",), n_boot=300)["accuracy"]
    assert lo <= est <= hi and 0 < hi - lo < 0.25 and 0.6 < est < 0.95


def test_above_chance_needs_the_whole_interval_above_the_commoner_class():
    from analysis.summary import summary

    rng = np.random.default_rng(1)
    rows = []
    for model, skill in (("good", 0.9), ("guess", 0.0)):
        for i in range(300):
            y = int(i % 10 < 6)  # 60 % pain: always answering "pain" scores 0.6
            p1 = y if rng.random() < skill else rng.random()
            rows.append({"model": model, "scenario": "s", "fold": i % 2, "image_id": f"i{i}", "label": y,
                         "prob_1": float(p1), "prob_0": 1 - float(p1), "pred": int(p1 > 0.5), "dataset": "d",
                         "subject": f"s{i // 5}"})
    summ = summary(pd.DataFrame(rows), n_boot=200).set_index("model")
    assert summ.loc["good", "chance_accuracy"] == pytest.approx(0.6)
    assert summ.loc["good", "above_chance"] and not summ.loc["guess", "above_chance"]


def _paired_rows(repeats: int = 1) -> pd.DataFrame:
    """Model a right on 12 images where b is wrong, b right on 2 where a is wrong, both right on 16; each image
    scored in `repeats` folds (the external scenario's repeats), one image per subject."""
    rows = []
    for fold in range(repeats):
        for i in range(30):
            a_ok, b_ok = (True, False) if i < 12 else ((False, True) if i < 14 else (True, True))
            for model, ok in (("a", a_ok), ("b", b_ok)):
                p1 = 0.8 if ok else 0.2
                rows.append({"scenario": "s", "fold": fold, "image_id": f"i{i}", "model": model, "label": 1,
                             "prob_0": 1 - p1, "prob_1": p1, "pred": int(ok), "dataset": "d", "subject": f"s{i}"})
    return pd.DataFrame(rows)


def test_mcnemar_and_holm():
    # exact two-sided McNemar p of 12 against 2 discordant pairs = 0.013
    t = compare(_paired_rows(), n_boot=200)
    assert t.loc[0, "only_a_correct"] == 12 and t.loc[0, "only_b_correct"] == 2
    assert t.loc[0, "p_mcnemar"] == pytest.approx(0.01294, abs=1e-4)
    assert np.allclose(holm(np.array([0.01, 0.04, 0.03])), [0.03, 0.06, 0.06])


def test_canonical_warp_puts_landmarks_on_the_template():
    # a crop whose landmarks are the template scaled by 1/2 and shifted: a dot at the nose lands on the template's nose
    pts = TEMPLATE / 2 + 5
    heat = np.zeros((64, 64))
    nx, ny = np.round(pts[2]).astype(int)
    heat[ny - 1:ny + 2, nx - 1:nx + 2] = 1.0
    warped = np.nan_to_num(to_canonical(heat, pts))
    y, x = np.unravel_index(np.argmax(warped), warped.shape)
    assert abs(x - TEMPLATE[2][0]) <= 3 and abs(y - TEMPLATE[2][1]) <= 3
    uniform = np.ones((CANON, CANON))
    covered = np.zeros((CANON, CANON), bool)
    covered[20:100, 10:100] = True
    mask = np.zeros((CANON, CANON), bool)
    mask[40:60, 40:60] = True
    share, chance = region_share(uniform, covered, mask)
    face = covered & face_oval()
    assert share == pytest.approx(chance) == pytest.approx(400 / face.sum())


def test_a_bootstrap_p_value_is_never_below_what_its_resamples_can_show():
    """Every resample favours the first network: the p-value is 2/(B+1), not 0."""
    from analysis.intervals import paired_bootstrap

    n = 40
    rows = {"label": np.ones(n, int), "subject": [f"s{i}" for i in range(n)], "dataset": "d"}
    right = pd.DataFrame({**rows, "prob_1": np.full(n, 0.9), "prob_0": np.full(n, 0.1)})
    wrong = pd.DataFrame({**rows, "prob_1": np.full(n, 0.1), "prob_0": np.full(n, 0.9)})
    result = paired_bootstrap(right, wrong, lambda d: metrics_of(d)["accuracy"], n_boot=199)
    assert result["difference"] == 1.0 and result["p"] == pytest.approx(2 / 200)


def test_paired_comparisons_count_each_image_once():
    """The external scenario scores the same images once per repeat: five repeats are not five times the data."""
    once, repeated = compare(_paired_rows(1), n_boot=300), compare(_paired_rows(5), n_boot=300)
    for t in (once, repeated):
        assert t.loc[0, "images"] == 30 and t.loc[0, "subjects"] == 30
        assert (t.loc[0, "only_a_correct"], t.loc[0, "only_b_correct"]) == (12, 2)
    assert repeated.loc[0, "p_mcnemar"] == pytest.approx(once.loc[0, "p_mcnemar"])  # 0.013, not 1.6e-5
    assert repeated.loc[0, "accuracy_difference"] == pytest.approx(10 / 30)
    lo, hi = repeated.loc[0, "accuracy_difference_ci_low"], repeated.loc[0, "accuracy_difference_ci_high"]
    assert 0 < lo < 10 / 30 < hi < 1


def _face(size: int) -> np.ndarray:
    """Landmarks of a face that fills about 80 % of a `size`-pixel square, slightly off centre and rotated."""
    theta = np.deg2rad(6)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centred = (TEMPLATE - CANON / 2) @ rot.T
    return centred * (0.8 * size / CANON) + size / 2 + np.array([0.03, -0.02]) * size


@pytest.mark.parametrize("stored, read", [(64, 32), (224, 75)])
def test_heatmaps_register_when_the_network_reads_another_size(stored, read):
    """Landmarks are kept in stored pixels, maps are made at the input size: scaled, a mark on the nose lands on
    the template's nose and a whole map covers the face; unscaled, neither holds."""
    from analysis.face_space import scaled_landmarks

    landmarks = _face(stored)
    pts = scaled_landmarks(landmarks, stored, read)
    heat = np.zeros((read, read))
    nx, ny = np.round(pts[2]).astype(int)
    heat[ny - 1:ny + 2, nx - 1:nx + 2] = 1.0
    tolerance = 2 + 0.5 * CANON / (0.8 * read)  # the mark sits on whole input pixels: half of one, in the template
    y, x = np.unravel_index(np.argmax(np.nan_to_num(to_canonical(heat, pts))), (CANON, CANON))
    assert abs(x - TEMPLATE[2][0]) <= tolerance and abs(y - TEMPLATE[2][1]) <= tolerance
    y, x = np.unravel_index(np.argmax(np.nan_to_num(to_canonical(heat, landmarks))), (CANON, CANON))
    assert np.hypot(x - TEMPLATE[2][0], y - TEMPLATE[2][1]) > 15  # the stored landmarks on the read map miss
    from analysis.face_space import face_oval

    face = face_oval()
    covered = np.isfinite(to_canonical(np.ones((read, read)), pts))
    assert covered[face].mean() > 0.95
    wrong = np.isfinite(to_canonical(np.ones((read, read)), landmarks))
    assert wrong[face].mean() < 0.5


def test_a_map_spread_evenly_over_the_face_scores_chance():
    """Chance is taken over the face, not the whole canonical square: a map even over the face and zero on the
    background prefers no region and scores a ratio of 1, with the maps covering the whole square (as LIME's do)."""
    from analysis.face_space import pain_mask, template_regions

    mask, full = pain_mask(template_regions()), np.ones((CANON, CANON), bool)
    share, chance = region_share(face_oval().astype(float), full, mask)
    assert share / chance == pytest.approx(1.0)
    share, chance = region_share(np.where(mask & face_oval(), 1.0, 0.0), full, mask)
    assert share == pytest.approx(1.0) and share / chance > 2  # all of the mass on the pain regions


def test_the_explanation_null_spans_its_seeds_and_ranks_each_against_the_trained_map():
    """Several re-initialised networks make the null: a trained map on the pain regions lies outside the seeds'
    ratios and ranks unlike them; a trained map that is one of the seeds' own lies inside, with rank correlation 1
    against it."""
    from analysis.face_space import pain_mask, template_regions
    from analysis.lime_heatmaps import null_of

    rng = np.random.default_rng(0)
    mask, face = pain_mask(template_regions()), face_oval()
    noise = [[np.where(face, rng.random((CANON, CANON)), np.nan)] for _ in range(5)]  # one map per seed
    focused = np.where(mask & face, 1.0, 0.05)
    null = null_of(focused, face, noise, mask)
    share, chance = region_share(focused, np.ones((CANON, CANON), bool), mask)
    assert null["null_seeds"] == 5 and null["ratio_randomised_min"] < null["ratio_randomised_max"] < share / chance
    assert abs(null["rank_correlation_randomised"]) < 0.2
    own = np.nan_to_num(noise[2][0])
    same = null_of(own, face, noise, mask)
    own_share, own_chance = region_share(own, np.ones((CANON, CANON), bool), mask)
    assert same["ratio_randomised_min"] <= own_share / own_chance <= same["ratio_randomised_max"]
    assert same["rank_correlation_randomised"] == pytest.approx((1 + 4 * 0.0) / 5, abs=0.05)


def test_region_share_is_taken_raw_over_covered_pixels():
    """A diffuse map with the pain regions at twice the rest scores 2 / (1 + a) times chance (a: their share of the
    covered area), whatever the uncovered pixels; stretching to [0, 1] first would flatter it."""
    from analysis.face_space import stretched

    mask = np.zeros((CANON, CANON), bool)
    mask[30:60, 20:90] = True
    covered = np.zeros((CANON, CANON), bool)
    covered[10:110, 10:100] = True
    heat = np.where(mask, 2.0, 1.0) * covered
    share, chance = region_share(heat, covered, mask)
    face = covered & face_oval()
    a = (mask & face).sum() / face.sum()
    assert chance == pytest.approx(a) and share / chance == pytest.approx(2 / (1 + a))
    full = np.ones_like(covered)
    raw = region_share(np.where(mask, 2.0, 1.0), full, mask)
    flattered = region_share(stretched(np.where(mask, 2.0, 1.0)), full, mask)
    assert flattered[0] / flattered[1] > 2 * raw[0] / raw[1]  # stretched, the rest of the face counts for nothing


def test_pain_regions_come_from_the_phantoms_truth(tiny_phantom):
    """The phantom records every region it draws, AU10's upper lip included; in the canonical face that region
    lies between the nose and the mouth corners, partly outside the template's stand-in box."""
    import json

    from analysis.face_space import TEMPLATE_REGIONS, template_regions, truth_regions
    from pipelines.phantom.synth import TRUTH_FILE

    truth = pd.read_csv(tiny_phantom / TRUTH_FILE)
    assert all("upper_lip" in json.loads(g)["regions"] for g in truth["geometry"])
    regions = truth_regions(tiny_phantom / TRUTH_FILE)
    assert set(regions) == {"brows", "eyes", "nose", "upper_lip"}
    ys, xs = np.nonzero(regions["upper_lip"])
    assert TEMPLATE[2][1] < ys.mean() < TEMPLATE[3][1] + 4 and TEMPLATE[3][0] - 8 < xs.mean() < TEMPLATE[4][0] + 8
    assert (regions["upper_lip"] & ~template_regions()["upper_lip"]).any()
    assert TEMPLATE_REGIONS.keys() == regions.keys()


@pytest.fixture(scope="session")
def smoke_report(smoke_study, tiny_phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code = main(["analyze", smoke_study["uri"], "--out", str(out), "--ratings", str(tiny_phantom / "cppain" / "ratings.csv"),
                 "--bootstrap", "200", "--lime-samples", "40", "--lime-images", "1", "--lime-segments", "12",
                 "--lime-null-seeds", "2"])  # a null of two seeds: enough to have a spread, a third of five's time
    assert code == 0
    return out


def test_analyze_writes_tables_figures_and_a_self_contained_page(smoke_report, smoke_study):
    cfg = smoke_study["cfg"]
    tables = smoke_report / "tables"
    res = pd.read_csv(tables / "results_by_model_and_scenario.csv")
    assert len(res) == len(cfg.models) * len(cfg.scenarios)
    for col in ("accuracy_mean", "accuracy_std", "accuracy_ci_low", "accuracy_ci_high", "roc_auc", "f1_macro", "cm_11"):
        assert col in res
    assert ((res["accuracy_ci_low"] <= res["accuracy"]) & (res["accuracy"] <= res["accuracy_ci_high"])).all()
    for name in ("per_class", "model_comparisons", "chosen_settings", "datasets_table2", "networks_table3",
                 "trial_counts", "heatmap_regions", "results_by_fold"):
        assert len(pd.read_csv(tables / f"{name}.csv")) == len(json.loads((tables / f"{name}.json").read_text())) > 0
    assert pd.read_csv(tables / "trial_counts.csv")["trials"].sum() == len(cfg.models) * len(cfg.scenarios) * cfg.folds * cfg.search.trials
    regions = pd.read_csv(tables / "heatmap_regions.csv")
    assert len(regions) and (regions["chance"] > 0).all()
    assert (regions["null_seeds"] == 2).all() and regions["rank_correlation_randomised"].between(-1, 1).all()
    spread = regions.dropna(subset=["ratio", "ratio_randomised_min", "ratio_randomised_max"])
    assert (spread["outside_null"] == ((spread["ratio"] < spread["ratio_randomised_min"])
                                       | (spread["ratio"] > spread["ratio_randomised_max"]))).all()
    html = (smoke_report / "index.html").read_text()
    assert 'id="headline"' in html and "Protocol" in html and "Agreement of the human raters" in html
    rows = len(pd.read_csv(tables / "results_by_model_and_scenario.csv"))
    assert "judged for each row alone" in html and f"Bonferroni level (1 - 0.05/{rows}" in html
    assert not re.search(r"""(src|href)=['"](https?:)?//""", html)  # nothing fetched from a network
    n_figs = html.count("<img ")
    assert n_figs >= 3 + len(regions)
    assert (smoke_report / "report.md").exists()
    central = pd.read_csv(tables / "scenario_gap.csv")  # the paper's central result comes first
    assert len(central) == len(cfg.models) * len(cfg.scenarios) and "paper accuracy" not in central  # a phantom run
    assert len(pd.read_csv(tables / "scenario_gaps.csv")) == 2 * len(cfg.models)
    videos = pd.read_csv(tables / "cp_videos.csv")
    assert len(videos) == len(cfg.models) and (videos["videos"] > 0).all()
    assert html.index('id="scenario-gap"') < html.index('id="cp-videos"') < html.index('id="headline"')
    counts = pd.read_csv(tables / "label_issue_counts.csv")  # every pool dataset, scored out of fold once
    assert set(counts["dataset"]) == set(cfg.pool) and (counts["scenario"] == "subject_kfold").all()
    assert 'id="label-issue-counts"' in html
    # every search stored its validation predictions: each has a threshold chosen there, for the target recall
    points = pd.read_csv(tables / "search_thresholds.csv")
    assert len(points) == len(cfg.models) * len(cfg.scenarios) * cfg.folds and (points["validation_images"] > 0).all()
    assert not points["from"].str.startswith("no validation predictions").any()
    op = pd.read_csv(tables / "operating_point.csv")
    assert len(op) == len(res) and (op["target pain recall"] == 0.8).all()
    assert (op["searches without validation predictions"] == 0).all() and "Operating point" in html
    assert len(pd.read_csv(tables / "calibration_fitted.csv")) == len(res)
    calibration = pd.read_csv(tables / "calibration.csv")
    assert len(calibration) == len(res) and calibration["brier"].between(0, 1).all()
    assert (smoke_report / "figures" / "calibration.png").is_file() and "10 equal-width bins" in html


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed here if the machine lacks it."""
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], check=True,
                       capture_output=True, timeout=900, env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return exe


def test_report_opens_in_headless_chromium(smoke_report, chromium, tmp_path):
    page = (smoke_report / "index.html").resolve()
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--window-size=1024,768",
           "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'data-figures-loaded="(\d+)/(\d+)"', dom)
    assert m, dom[-2000:]
    loaded, total = int(m.group(1)), int(m.group(2))
    assert total >= 3 and loaded == total  # every embedded figure decoded in the browser
    assert 'id="headline"' in dom and "<td>weinet</td>" in dom
    # the widest tables (the heatmap regions, the searches) scroll in their own box: the page never scrolls sideways
    assert 'data-page-overflow="no"' in dom, re.findall(r"data-page-overflow=\"\w+\"", dom)
    # a learning rate below 0.0005 reads as itself, not as 0.000
    chosen = dom.split('id="chosen-settings"')[1].split("</table>")[0]
    header = re.findall(r"<th>(.*?)</th>", chosen)
    rates = [re.findall(r"<td>(.*?)</td>", row)[header.index("learning_rate")]
             for row in chosen.split("<tr>")[2:]]  # the paper's row, then one per search
    assert rates and all(float(r) > 0 and r != "0.000" for r in rates), rates


def test_an_output_folder_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """`analyze` and `export` write through `written_whole`: a run that fails half way leaves the earlier output
    untouched (no new file beside the old ones, nothing left over), and one that ends leaves only its own files."""
    import os

    from pipelines.errors import PainsearchError
    from pipelines.storage.folders import MARK, written_whole

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(PainsearchError, match="did not write there"):  # a folder of the user's is never replaced
        with written_whole(mine):
            pass
    assert (mine / "notes.txt").read_text() == "the user's"
    shutil.rmtree(mine)
    here = tmp_path / "here"
    here.mkdir()
    (here / MARK).write_text("")
    monkeypatch.chdir(here)
    with pytest.raises(PainsearchError, match="current folder"):  # `--out .` never replaces the folder it runs in
        with written_whole("."):
            pass
    monkeypatch.undo()
    shutil.rmtree(here)
    out = tmp_path / "report"
    out.mkdir()
    (out / MARK).write_text("")  # an earlier run's output
    (out / "old.png").write_text("stale")
    (out / "index.html").write_text("earlier")
    with pytest.raises(RuntimeError):
        with written_whole(out) as work:
            (work / "index.html").write_text("half")
            raise RuntimeError("the run fails half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert (out / "index.html").read_text() == "earlier" and (out / "old.png").exists()
    with written_whole(out) as work:
        (work / "index.html").write_text("new")
        assert (out / "index.html").read_text() == "earlier"  # the old one stands until the new one is whole
    assert sorted(p.name for p in out.iterdir()) == [MARK, "index.html"] and (out / "index.html").read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"] and (out.stat().st_mode & 0o777) == 0o777 & ~umask


def test_figure_titles_are_never_cut_off(tmp_path, monkeypatch):
    """Figure 5 of a report of two networks is narrower than its title: the title wraps instead of running off
    both edges."""
    import matplotlib.pyplot as plt

    from analysis import figures

    cols = ["precision_no_pain", "recall_no_pain", "precision_pain", "recall_pain"]
    summ = pd.DataFrame([{"model": m, "scenario": "external", **{f"{c}{s}": 0.5 for c in cols for s in ("", "_mean", "_std")}}
                         for m in ("vgg16", "weinet")])
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    figures.per_class_external(summ, tmp_path / "f5.png")
    figures.by_network(summ.assign(accuracy_mean=0.5, accuracy_std=0.1, f1_pain_mean=0.5, f1_pain_std=0.1),
                       tmp_path / "f4.png")
    preds = pd.DataFrame({"model": "vgg16", "scenario": "external", "label": [0, 1] * 10,
                          "prob_0": np.linspace(0, 1, 20), "prob_1": np.linspace(1, 0, 20)})
    figures.reliability_diagram(pd.concat([preds, preds.assign(model="weinet")]), tmp_path / "cal.png")
    assert len(drawn) == 3 and all(figures.outside(fig) == [] for fig in drawn), [figures.outside(f) for f in drawn]


def test_calibration_measures_on_known_values():
    from analysis.calibration import brier, ece, reliability

    y = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    assert brier(y, y.astype(float)) == 0 and brier(y, np.full(8, 0.5)) == 0.25
    honest = np.array([0.75, 0.75, 0.75, 0.75, 0.25, 0.25, 0.25, 0.25])  # 3 of 4 pain, then 1 of 4
    labels = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    assert ece(labels, honest) == pytest.approx(0.0)
    bold = np.where(honest > 0.5, 0.95, 0.05)  # the same ranking, overconfident by 0.2 in every bin
    assert ece(labels, bold) == pytest.approx(0.2)
    r = reliability(labels, bold)
    assert r["images"].tolist() == [4, 4] and r["pain_share"].tolist() == [0.25, 0.75] and r["low"].tolist() == [0.0, 0.9]
