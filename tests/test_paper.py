"""The paper's study in miniature (configs/paper-mini.yaml): pretrained networks with part of their backbone
frozen, several epochs with patience, faces stored at 64 px and read at 32, the external repeats; then its
report with LIME. Every assertion reads the results store or the report, as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cluster.cli import main
from pipelines.storage import open_store
from search.config import load_study_config
from search.layout import BEST_DIR, CHOICE, PREDICTIONS, REFIT_DIR, TRAIN_DIR, read_parquet
from search.study import searches


ROOT = Path(__file__).resolve().parent.parent
PAPER_MINI = ROOT / "configs" / "paper-mini.yaml"


@pytest.fixture(scope="session")
def mini_shards(tiny_phantom, tmp_path_factory) -> Path:
    """The tiny phantom stored as the paper-mini config says: 64 px faces, which the networks read at 32."""
    from pipelines.config import load_prepare_config
    from pipelines.phantom.synth import sources
    from pipelines.shards.prepare import prepare

    out = tmp_path_factory.mktemp("mini") / "shards"
    cfg = load_prepare_config(PAPER_MINI, {"out": str(out), "engine": "local", "sources": sources(tiny_phantom)})
    assert cfg.preprocess.size == 64
    prepare(cfg, log=lambda m: None)
    return out


def mini_config(shards: Path, weights: Path, storage: str, **more):
    return load_study_config(PAPER_MINI, {"shards": str(shards), "storage": storage,
                                          "train": {"weights_dir": str(weights)}, **more})


@pytest.fixture(scope="session")
def paper_mini(mini_shards, standin_weights, ray_local, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("paper-mini") / "results")
    code = main(["search", "run", "--config", str(PAPER_MINI), "--set", f"shards={mini_shards}",
                 "--set", f"train.weights_dir={standin_weights}", "--storage", storage])
    assert code == 0
    return {"uri": storage, "cfg": mini_config(mini_shards, standin_weights, storage)}


@pytest.fixture(scope="session")
def paper_mini_report(paper_mini, tiny_phantom, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paper-mini-report")
    code = main(["analyze", paper_mini["uri"], "--out", str(out), "--bootstrap", "200", "--lime-samples", "40",
                 "--lime-images", "1", "--lime-segments", "12", "--lime-null-seeds", "2"])
    assert code == 0
    return out


def _epochs(store, run: str) -> pd.DataFrame:
    return pd.DataFrame([json.loads(store.read_bytes(run, "epochs", f)) for f in store.list(run, "epochs")])


def _rescore(store, key, choice: dict, weights: str, shards: str) -> np.ndarray:
    """The test images scored again, here, with the named weights through the one loader."""
    from pipelines.models.loader import load_from_store
    from pipelines.shards.read import read_rows
    from pipelines.training.data import decode_images
    from pipelines.training.loop import predict

    preds = read_parquet(store.read_bytes(key.path, PREDICTIONS))
    rows = read_rows(shards, None, set(preds["image_id"]), ["image"])
    model = load_from_store(choice["train"], store, key.path, BEST_DIR, weights)
    probs = predict(model, decode_images(rows.column("image").to_pylist(), choice["train"]["size"]), 64)
    mine = pd.DataFrame({"image_id": rows.column("image_id").to_pylist(), "p": probs[:, 1]})
    return preds.merge(mine, on="image_id")[["prob_1", "p"]].to_numpy()


def test_every_search_scored_its_chosen_epochs_weights(paper_mini, mini_shards):
    """The test split is scored with the weights of exactly the epoch that ranked the chosen trial; trials of
    several epochs whose best epoch is not their last are among them."""
    cfg = paper_mini["cfg"]
    store = open_store(paper_mini["uri"])
    not_last = 0
    for key in searches(cfg):
        choice = json.loads(store.read_bytes(key.path, BEST_DIR, CHOICE))
        epochs = _epochs(store, key.of(TRAIN_DIR, choice["trial_id"]))
        scores = epochs.set_index("epoch")[cfg.search.metric]
        assert choice["epoch"] == scores.idxmax() and choice["scored"] == "chosen_epoch"
        assert json.loads(store.read_bytes(key.of(TRAIN_DIR, choice["trial_id"]), choice["checkpoint"], "state.json"))[
            "epoch"] == choice["epoch"]
        assert store.read_bytes(key.path, BEST_DIR, "chosen.h5") == store.read_bytes(
            key.of(TRAIN_DIR, choice["trial_id"]), choice["checkpoint"], "model.h5")
        not_last += choice["epoch"] < epochs["epoch"].max()
        if key.model != "weinet":  # a pretrained network: part of its backbone frozen, from the stand-in weights
            assert 0 < choice["params"]["finetune_depth"] < 1 and choice["train"]["weights"] == "imagenet"
        if key.fold == 0:
            pairs = _rescore(store, key, choice, "chosen.h5", str(mini_shards))
            assert len(pairs) and np.allclose(pairs[:, 0], pairs[:, 1], atol=1e-5)
    assert not_last, "no chosen trial peaked before its last epoch: the check above could not tell the two apart"


def test_the_report_at_paper_settings(paper_mini, paper_mini_report):
    cfg = paper_mini["cfg"]
    tables = paper_mini_report / "tables"
    regions = pd.read_csv(tables / "heatmap_regions.csv")
    for model in cfg.models:
        mine = regions[regions["model"] == model]
        assert set(mine["class"]) <= {"no pain", "pain"} and set(mine["scenario"]) == set(cfg.scenarios)
        # which classes a seeded network predicts is its training's to say: a class is missing for a dataset
        # exactly when the model gave it to none of that dataset's candidates
        for _, group in mine.groupby(["scenario", "dataset"]):
            assert group["candidates"].nunique() == 1 and (group["predicted"] >= group["images"]).all()
            assert group["predicted"].sum() == group["candidates"].iloc[0], group
        assert (mine["face_covered"] > 0.9).all()  # registered: the maps cover the template's face
        external = mine[mine["scenario"] == "external"]
        assert "cppain" in set(external["dataset"]) and set(external["dataset"]) & set(cfg.pool)
        assert external["weights"].nunique() == 1  # one model explains CP and PAIN-DB faces
    assert (regions["regions_from"] == "phantom truth").all()
    # a ratio is missing only where a map has no positive weight at all (a network that answers one class whatever
    # it sees); the re-initialised network's ratio stands beside every trained one
    assert (regions["ratio"].isna() == (regions["mass_in_pain_regions"].isna())).all()
    assert regions["ratio"].notna().mean() > 0.5 and regions["ratio_randomised"].notna().mean() > 0.5
    # paired comparisons count each CP-PAIN image once, though each external repeat scored it
    folds = read_parquet(open_store(paper_mini["uri"]).read_bytes("folds/external.parquet"))
    cp_images = folds.loc[folds["role"] == "test", "image_id"].nunique()
    comparisons = pd.read_csv(tables / "model_comparisons.csv")
    external = comparisons[comparisons["scenario"] == "external"]
    assert len(external) == 3 and (external["images"] == cp_images).all()
    chosen = pd.read_csv(tables / "chosen_settings.csv")
    assert chosen.loc[0, "model"] == "the paper" and chosen.loc[0, "learning_rate"] == 1e-3
    assert len(chosen) == 1 + len(searches(cfg))
    html = (paper_mini_report / "index.html").read_text()
    assert "best validation epoch" in html and "re-initialised" in html


def test_refit_retrains_the_chosen_settings_and_scores_that_model(mini_shards, standin_weights, ray_local, tmp_path):
    """`study.refit`: the chosen settings trained again on training + validation for as many epochs as the chosen
    trial took to reach its best validation epoch; that model, kept beside the chosen trial's, scored the test split."""
    import ray

    from search.study import start_study, write_folds
    from search.tuner import run_search

    uri = str(tmp_path / "results")
    cfg = mini_config(mini_shards, standin_weights, uri, refit=True, models=["vgg16"], scenarios=["subject_kfold"],
                      search={"trials": 1})
    store = open_store(uri)
    start_study(cfg, store, False, print)
    write_folds(cfg, store)
    key = searches(cfg)[0]
    done = ray.get(ray.remote(num_cpus=0)(run_search).remote(cfg.model_dump(mode="json"), uri, key.as_dict()))
    assert done["status"] == "ok" and done["scored"] == "refit"
    choice = json.loads(store.read_bytes(key.path, BEST_DIR, CHOICE))
    assert choice["scored"] == "refit" and choice["refit_epochs"] == choice["epoch"] + 1
    refit_epochs = _epochs(store, key.of(REFIT_DIR))
    assert list(refit_epochs["epoch"]) == list(range(choice["epoch"] + 1))
    assert store.read_bytes(key.path, BEST_DIR, "refit.h5") != store.read_bytes(key.path, BEST_DIR, "chosen.h5")
    pairs = _rescore(store, key, choice, "refit.h5", str(mini_shards))
    assert len(pairs) and np.allclose(pairs[:, 0], pairs[:, 1], atol=1e-5)
    assert "retrained on training + validation" in json.loads(store.read_bytes("study.json"))["protocol"]
