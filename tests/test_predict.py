"""Using what the study found: `predict` on phantom images, a phantom video and bad inputs; `export` loaded in a
fresh process without painsearch; the notebook API. The model is the smoke study's (S3 results store)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cluster.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def faces(tiny_phantom) -> list[Path]:
    return sorted((tiny_phantom / "delaware" / "images").glob("*.jpg"))[:6]


@pytest.fixture(scope="module")
def video(faces, tmp_path_factory) -> Path:
    """A phantom video written with OpenCV: 10 frames a second, 24 frames from six faces."""
    import cv2
    from PIL import Image

    path = tmp_path_factory.mktemp("video") / "patient.mp4"
    frames = [np.asarray(Image.open(f).convert("RGB").resize((300, 400))) for f in faces]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (300, 400))
    for i in range(24):
        writer.write(frames[i // 4][..., ::-1])
    writer.release()
    assert path.stat().st_size > 0
    return path


def test_predict_images_a_video_and_bad_inputs(smoke_study, faces, video, tmp_path, capsys):
    from analysis.chosen_model import from_results

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.png").write_text("not an image")
    (junk / "broken.mp4").write_bytes(b"\0" * 1000)
    out, mapping = tmp_path / "out", tmp_path / "ids.csv"
    code = main(["predict", smoke_study["uri"], *map(str, faces), str(video), str(junk), "--model", "weinet",
                 "--scenario", "subject_kfold", "--out", str(out), "--explain", "--mapping", str(mapping)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "predict: the network runs on the CPU (TensorFlow sees no GPU)" in printed.out  # the device it used
    table = pd.read_csv(out / "predictions.csv")
    pd.testing.assert_frame_equal(table, pd.read_parquet(out / "predictions.parquet"), check_dtype=False, rtol=1e-6)
    assert list(table.columns) == ["input", "frame", "time_s", "box_x0", "box_y0", "box_x1", "box_y1",
                                   "face_confidence", "prob_pain", "label"]
    assert table["prob_pain"].between(0, 1).all() and set(table["label"]) <= {"pain", "no pain"}
    # every input by a pseudonym, in the table, the report and the file names; the mapping back is kept apart
    ids = pd.read_csv(mapping, dtype=str).set_index("path")["pseudonym"]
    assert set(table["input"]) <= set(ids) and table["input"].str.fullmatch(r"in-[0-9a-f]{10}").all()
    written = [p.name for p in out.rglob("*")] + [(out / n).read_text() for n in ("predictions.csv", "predict_report.json")]
    for raw in [*faces, video, junk / "notes.png", junk / "broken.mp4"]:
        assert not any(raw.stem in w for w in written), raw
    stills = table[table["frame"].isna()]
    assert len(stills) == len(faces)
    moving = table[table["input"] == ids[str(video.resolve())]]
    assert list(moving["frame"]) == list(range(0, 24, 2)) and np.allclose(moving["time_s"], moving["frame"] / 10)
    assert (moving["box_x1"] > moving["box_x0"]).all() and (moving["face_confidence"] >= 0.9).all()
    assert (out / f"{ids[str(video.resolve())]}_pain_over_time.png").is_file()
    report = json.loads((out / "predict_report.json").read_text())
    # the label is the search's operating point, chosen on its validation split, not 0.5
    chosen = from_results(smoke_study["uri"], "weinet", "subject_kfold")
    assert report["threshold"]["value"] == chosen.threshold and "validation" in report["threshold"]["from"]
    assert (table["label"] == np.where(table["prob_pain"] >= chosen.threshold, "pain", "no pain")).all()
    reasons = {r["input"]: r["reason"] for r in report["rejected"]}
    assert "not an image" in reasons[ids[str((junk / "notes.png").resolve())]]
    assert "video" in reasons[ids[str((junk / "broken.mp4").resolve())]]
    assert report["faces"] == len(table)
    assert len(list((out / "explanations").glob("*.png"))) == len(table)


def test_predict_refuses_a_missing_input_in_one_sentence(smoke_study, tmp_path, capsys):
    code = main(["predict", smoke_study["uri"], str(tmp_path / "nowhere.jpg"), "--model", "weinet",
                 "--scenario", "external", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    code = main(["predict", smoke_study["uri"], str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2 and "--model NAME --scenario" in capsys.readouterr().err


def test_export_loads_in_a_fresh_process_without_painsearch(smoke_study, faces, tmp_path, capsys):
    import yaml

    from analysis.chosen_model import from_folder, from_results
    from analysis.operating_point import threshold_for_recall
    from analysis.predict import predict
    from analysis.results import load
    from pipelines.training.data import decode_images

    out = tmp_path / "exported"
    assert main(["export", smoke_study["uri"], "--model", "vgg16", "--scenario", "external", "--out", str(out)]) == 0
    assert "export: the model is loaded and traced on the CPU (TensorFlow sees no GPU)" in capsys.readouterr().out
    card = json.loads((out / "model_card.json").read_text())
    assert card["scenario"] == "external" and 0 <= card["chance_accuracy"] <= 1
    assert set(card["test_metrics"]["accuracy"]) == {"value", "ci95"}
    assert card["preprocessing"]["size"] == 32 and "not a medical device" in card["intended_use_and_limits"]
    chosen = from_results(smoke_study["uri"], "vgg16", "external")
    # the card's metrics are its own fold's model's, on that fold's test images; its threshold is that search's,
    # chosen on the search's validation predictions for a pain recall of 0.8
    res = load(smoke_study["uri"])
    mine = res.predictions[(res.predictions["model"] == "vgg16") & (res.predictions["scenario"] == "external")
                           & (res.predictions["fold"] == card["fold"])]
    assert card["test_images"] == len(mine) and card["fold"] == chosen.source["search"]["fold"]
    val = res.validation[(res.validation["model"] == "vgg16") & (res.validation["scenario"] == "external")
                         & (res.validation["fold"] == card["fold"])]
    decision = card["decision_threshold"]
    assert len(val) and decision["value"] == chosen.threshold == threshold_for_recall(val["label"].to_numpy(),
                                                                                       val["prob_1"].to_numpy(), 0.8)
    y, pain = mine["label"].to_numpy(), mine["prob_1"].to_numpy() >= decision["value"]
    assert decision["test_sensitivity"] == pytest.approx(pain[y == 1].mean())
    md = (out / "model_card.md").read_text()
    meta = yaml.safe_load(md.split("---")[1])  # Hugging Face's model card metadata, then the text
    assert md.startswith("---\n") and "\n---\n# Model card" in md
    assert meta["pipeline_tag"] == "image-classification" and meta["license"] == "other"
    assert "FILL IN" in meta["license_link"] and meta["decision_threshold"] == pytest.approx(decision["value"], abs=1e-6)
    assert {m["type"] for m in meta["model-index"][0]["results"][0]["metrics"]} >= {"accuracy", "roc_auc"}
    x = decode_images([f.read_bytes() for f in faces[:3]], chosen.size)
    np.save(tmp_path / "x.npy", x)
    expected = chosen.load()(x, training=False).numpy()
    code = ("import os, sys, numpy as np, tensorflow as tf\n"
            f"m = tf.keras.models.load_model({str(out / 'model')!r}, compile=False)\n"
            f"np.save({str(tmp_path / 'p.npy')!r}, m(np.load({str(tmp_path / 'x.npy')!r})).numpy())\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] in ('pipelines', 'search', 'analysis', 'cluster')))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TF_USE_LEGACY_KERAS": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("[]"), r.stderr[-2000:]
    assert np.allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-5)
    # plain TensorFlow with Keras 3 as its Keras (no TF_USE_LEGACY_KERAS): the card's SavedModel signature code
    plain = md.split("With plain TensorFlow")[1].split("```python\n")[1].split("```")[0]
    code = (f"import os, numpy as np\nos.chdir({str(out)!r})\nfaces = np.load({str(tmp_path / 'x.npy')!r})\n" + plain
            + f"np.save({str(tmp_path / 'q.npy')!r}, probabilities.numpy())\n")
    env.pop("TF_USE_LEGACY_KERAS")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.allclose(np.load(tmp_path / "q.npy"), expected, atol=1e-5)
    # raw crops of any size, larger or smaller than the input, get what the training path gives them (Pillow's
    # bilinear into a PNG's whole grey levels, then the network); the resizes agree to one grey level
    import io

    import tf_keras as keras
    from PIL import Image

    exported = keras.models.load_model(str(out / "model"), compile=False)
    for side in (20, 90):
        crops = [np.asarray(Image.open(f).convert("RGB").resize((side, side), Image.BICUBIC)) for f in faces[:3]]
        pngs = []
        for c in crops:
            buf = io.BytesIO()
            Image.fromarray(c).save(buf, format="PNG")
            pngs.append(buf.getvalue())
        trained = chosen.load()(decode_images(pngs, chosen.size), training=False).numpy()
        assert np.abs(exported(np.stack(crops).astype(np.float32)).numpy() - trained).max() < 5e-3, side
    # predict takes the exported folder, with the same numbers as from the store
    a = predict(from_folder(out), [str(f) for f in faces[:3]], names="raw")
    b = predict(chosen, [str(f) for f in faces[:3]], names="raw")
    assert len(a) == len(b) > 0 and np.allclose(a["prob_pain"], b["prob_pain"], atol=1e-5)


def test_the_study_opens_in_optuna_tune_and_tensorboard(smoke_study):
    """Each search's Optuna study (its journal in the store), Tune's own API on a search's path, and the TensorBoard
    events Tune wrote, all read from the smoke study's S3 store."""
    import tempfile

    from ray import tune

    from analysis.api import open_study
    from pipelines.bootstrap import tensorflow
    from pipelines.storage import open_store
    from search.layout import SearchKey

    cfg = smoke_study["cfg"]
    study = open_study(smoke_study["uri"])
    key = SearchKey("weinet", "subject_kfold", 0)
    import optuna

    optuna_study = study.optuna(key.model, key.scenario, key.fold)
    complete = [t for t in optuna_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == cfg.search.trials and complete[0].params.keys() >= {"learning_rate"}
    store = open_store(smoke_study["uri"])
    analysis = tune.ExperimentAnalysis(store.path(key.path, "tune", key.slug), storage_filesystem=store.fs)
    frame = analysis.dataframe()
    assert len(frame) == cfg.search.trials and "val_f1_macro" in frame.columns
    grid = study.tuner(key.model, key.scenario, key.fold).get_results()  # Tuner.restore with the study's trainable
    assert len(grid) == cfg.search.trials and not grid.errors
    assert grid.get_dataframe()["val_f1_macro"].notna().all()
    trial_dirs = [d for d in store.dirs(key.path, "tune", key.slug) if d.startswith("trial_")]
    events = [(d, f) for d in trial_dirs for f in store.list(key.path, "tune", key.slug, d) if f.startswith("events.out")]
    assert len(events) == cfg.search.trials
    local = Path(tempfile.mkdtemp()) / "events"
    local.write_bytes(store.read_bytes(key.path, "tune", key.slug, *events[0]))
    tf = tensorflow()
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(str(local)) for v in e.summary.value}
    assert any(t.endswith("val_f1_macro") for t in tags), tags
    searches = len(cfg.models) * len(cfg.scenarios) * cfg.folds
    assert len(study.searches) == searches and len(study.trials) == searches * cfg.search.trials
    assert len(study.predictions) > 0 and len(study.epochs()) >= len(study.trials)
    tables = study.tables(bootstrap=50)
    assert len(tables["results_by_model_and_scenario"]) == len(cfg.models) * len(cfg.scenarios)


def test_the_readmes_notebook_example_runs(smoke_study, faces, tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- notebook example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    folder = tmp_path / "faces"  # a copy: the pseudonyms' mapping is written beside the inputs
    folder.mkdir()
    for f in faces:
        shutil.copy(f, folder)
    code = block.replace("s3://bucket/results", smoke_study["uri"]).replace("faces/", str(folder))
    namespace: dict = {}
    exec(compile(code, "README notebook example", "exec"), namespace)
    assert isinstance(namespace["scores"], pd.DataFrame) and len(namespace["scores"]) >= 1
    assert (folder / "painsearch-ids.csv").is_file()  # beside the inputs, by default


def test_pseudonyms_are_kept_beside_the_inputs_and_reused(tmp_path):
    """Each input gets a pseudonym of its own (two files of one name in two folders too); the mapping sits in the
    folder that holds every input, readable by its owner only; a later run reuses the pseudonyms of the inputs it
    knows and adds the new ones."""
    from analysis.predict import MAPPING_FILE, default_mapping, pseudonyms

    a, b = tmp_path / "ward-a", tmp_path / "ward-b"
    a.mkdir()
    b.mkdir()
    files = [a / "Jane_Doe_0001.jpg", b / "Jane_Doe_0001.jpg"]
    for f in files:
        f.write_bytes(b"x")
    mapping = default_mapping(files)
    assert mapping == tmp_path / MAPPING_FILE
    first = pseudonyms(files, mapping)
    assert len(set(first.values())) == 2 and all(v.startswith("in-") and "Jane" not in v for v in first.values())
    assert oct(mapping.stat().st_mode & 0o777) == "0o600"
    more = files + [a / "John_Roe.jpg"]
    more[-1].write_bytes(b"y")
    second = pseudonyms(more, mapping)
    assert all(second[f] == first[f] for f in files) and second[more[-1]] not in first.values()
    assert len(pd.read_csv(mapping)) == 3


def test_predict_refuses_a_folder_it_did_not_write_before_it_scores_anything(tmp_path):
    """An output folder is replaced whole, so one holding the user's own files is refused, and at once: not after
    every input (a long video, say) has been scored."""
    import time

    from analysis.chosen_model import ChosenModel
    from analysis.predict import predict
    from pipelines.errors import PainsearchError

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "diary.txt").write_text("mine")
    t = time.time()
    with pytest.raises(PainsearchError, match="did not write there"):
        predict(ChosenModel("unused", {}, {}, {}), [str(tmp_path / "nowhere.mp4")], out=mine)
    assert time.time() - t < 5 and (mine / "diary.txt").read_text() == "mine"
