"""`painsearch export`: a search's model as a self-contained Keras model, with a model card.

The folder holds `model/` (a tf-keras SavedModel that takes RGB face crops in [0, 255] of any size, resizes
them to the network's input and returns class probabilities: it loads with
`tf.keras.models.load_model`, TF_USE_LEGACY_KERAS=1, and needs no painsearch), `model_card.json` and
`model_card.md` (Hugging Face's layout: metadata between `---` lines, then what it was trained on, how, how well
on its own fold's test images, the decision threshold chosen on its validation split, and what it is not for).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from analysis.chosen_model import CARD, SAVED_MODEL, ChosenModel, from_results
from analysis.config import TARGET_RECALL
from pipelines.labels import CLASS_NAMES
from pipelines.storage.folders import written_whole

INTENDED_USE = (
    "A research model: it tells faces that show pain from faces that do not, in still images, as in the study "
    "it came from. It is not a medical device and must not drive care decisions. It was never tested on: "
    "children; people or cameras unlike those of its training data (see the data table); faces partly hidden, "
    "turned away or lit very differently; image sequences as a whole (each frame is judged alone); pain "
    "intensity (it answers pain or no pain). Its errors are not spread evenly: read the per-class metrics."
)


def wrap(model, size: int):
    """The trained model behind a resize to its input size: what the exported model is.

    The resize is the one training, test scoring and LIME read faces through (`decode_images`): Pillow's
    bilinear, whose triangle filter widens with the scale (so it smooths when it shrinks; Keras's `Resizing`
    does not, and differs by up to a third of the grey scale on a face shrunk from 224 to 64 px), rounded to
    whole grey levels as a decoded PNG is. The two agree to one grey level on some pixels."""
    import tensorflow as tf
    import tf_keras as keras

    face = keras.Input(shape=(None, None, 3), name="face")
    x = tf.image.resize(face, (size, size), method="bilinear", antialias=True)
    x = tf.clip_by_value(tf.round(x), 0.0, 255.0)
    return keras.Model(face, model(x), name=f"painsearch_{model.name}")


def card(chosen: ChosenModel) -> dict[str, Any]:
    """The model card: data, protocol, choice, the exported fold's own test metrics with intervals and chance, the
    decision threshold and what it gives on that fold's test images, preprocessing, limits."""
    from analysis.results import load
    from analysis.summary import summary
    from pipelines.shards.breakdown import breakdown

    study, choice = chosen.source["study"], chosen.source["choice"]
    cfg = study["config"]
    search = chosen.source["search"]
    res = load(chosen.source["results"], chosen.source.get("endpoint"))
    p = res.predictions
    preds = p[(p["model"] == search["model"]) & (p["scenario"] == search["scenario"]) & (p["fold"] == search["fold"])]
    row = summary(preds, n_boot=1000, seed=cfg.get("seed", 0)).iloc[0].to_dict()
    metrics = {name: {"value": row[name], "ci95": [row[f"{name}_ci_low"], row[f"{name}_ci_high"]]}
               for name in ("accuracy", "f1_pain", "f1_macro", "roc_auc", "precision_pain", "recall_pain")}
    y, pain = preds["label"].to_numpy().astype(int), preds["prob_1"].to_numpy() >= chosen.threshold
    try:
        data = breakdown(cfg["shards"], cfg.get("s3_endpoint"))
    except Exception:  # the shards may live where this machine cannot reach: the card says so
        data = {"datasets": [], "note": "the shards could not be read where the model was exported"}
    return {
        "name": chosen.name, "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classes": list(CLASS_NAMES),
        "input": "RGB face crops in [0, 255], any size (resized to the network's input), as `preprocessing` makes them",
        "output": "class probabilities, in the order of `classes`",
        "decision_threshold": {
            "value": chosen.threshold, "from": chosen.threshold_from,
            "target_pain_recall": chosen.source.get("target_recall"),
            "rule": "pain where the pain probability (output 1) is at or above the value",
            "test_sensitivity": float(pain[y == 1].mean()) if (y == 1).any() else None,
            "test_specificity": float((~pain[y == 0]).mean()) if (y == 0).any() else None},
        "data": {"breakdown": data.get("datasets", []), "pool": cfg["pool"], "external": cfg["external"],
                 "subjects": "pseudonyms only",
                 "licence": "FILL IN: the licence terms of the datasets this model was trained on, which bind it"},
        "protocol": study["protocol"], "scenario": search["scenario"], "fold": search["fold"],
        "folds": cfg["folds"], "seed": cfg["seed"],
        "training": {"settings": choice["train"], "chosen": choice["params"], "epoch": choice["epoch"],
                     "scored": choice["scored"], "validation": {cfg["search"]["metric"]: choice[cfg["search"]["metric"]]}},
        "test_metrics": metrics, "chance_accuracy": row["chance_accuracy"], "above_chance": bool(row["above_chance"]),
        "test_images": int(row["test_images"]),
        "preprocessing": chosen.preprocess,
        "intended_use_and_limits": INTENDED_USE,
        "source": {"results": chosen.source["results"], "search": search, "weights": chosen.source["weights"],
                   "versions": study.get("versions", {})},
    }


def front_matter(c: dict[str, Any]) -> str:
    """The Hugging Face model card metadata (YAML between `---` lines): task, licence, data, metrics, threshold."""
    import yaml

    results = [{"task": {"type": "image-classification", "name": "pain / no pain from a face"},
                "dataset": {"name": f"{c['scenario']} test split, fold {c['fold']}", "type": "painsearch"},
                "metrics": [{"type": k, "name": k, "value": round(float(v["value"]), 4)}
                            for k, v in c["test_metrics"].items() if np.isfinite(v["value"])]}]  # AUC needs both classes
    meta = {"library_name": "tf-keras", "pipeline_tag": "image-classification",
            "tags": ["pain", "facial-expression", "painsearch"],
            # Hugging Face's fields for terms of one's own: a short name, and where the terms are written
            "license": "other", "license_name": "training-data-terms", "license_link": c["data"]["licence"],
            "datasets": [*c["data"]["pool"], *c["data"]["external"]],
            "metrics": list(c["test_metrics"]), "decision_threshold": round(float(c["decision_threshold"]["value"]), 6),
            "model-index": [{"name": c["name"], "results": results}]}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def card_markdown(c: dict[str, Any]) -> str:
    m, d = c["test_metrics"], c["decision_threshold"]
    rates = ", ".join(f"{name} {d[key]:.3f}" for name, key in (("sensitivity", "test_sensitivity"),
                                                               ("specificity", "test_specificity")) if d[key] is not None)
    lines = [front_matter(c) + f"# Model card: {c['name']}", "", c["intended_use_and_limits"], "",
             "## Decision threshold", "",
             f"Call a face pain when its pain probability (output 1) is {d['value']:.4f} or more. Chosen on {d['from']}"
             + (f"; on this fold's test images it gives {rates}." if rates else "."), "",
             "## How well it did", "",
             f"On the test images of fold {c['fold']} of the {c['scenario']} scenario, this model's own ({c['test_images']} "
             f"images, subjects resampled for the intervals); always answering the commoner class would score "
             f"{c['chance_accuracy']:.3f}.", "",
             "| metric | value [95 % CI] |", "|---|---|"]
    lines += [f"| {k} | {v['value']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] |" for k, v in m.items()]
    lines += ["", "## What it was trained on", "", f"Pool: {', '.join(c['data']['pool'])}; external test set: "
              f"{', '.join(c['data']['external'])}. Subjects appear as pseudonyms only. Licence: {c['data']['licence']}.", ""]
    if c["data"]["breakdown"]:
        lines += ["| dataset | subjects | no pain | pain |", "|---|---|---|---|"]
        lines += [f"| {d['dataset']} | {d['subjects']} | {d['no_pain']} | {d['pain']} |" for d in c["data"]["breakdown"]]
    lines += ["", "## Protocol and choice", "", c["protocol"], "",
              f"Chosen on validation data: {json.dumps(c['training']['chosen'])}, best epoch {c['training']['epoch']}; "
              f"scored: {c['training']['scored'].replace('_', ' ')}.", "",
              "## Preprocessing (apply it to new faces)", "", "```", json.dumps(c["preprocessing"], indent=1), "```", "",
              "## Loading it", "", "With tf-keras (TensorFlow 2.16 or later with `TF_USE_LEGACY_KERAS=1`):", "",
              "```python", "import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'",
              "import tensorflow as tf", f"model = tf.keras.models.load_model('{SAVED_MODEL}', compile=False)",
              "probabilities = model(faces)  # RGB in [0, 255], N x H x W x 3", "```", "",
              "With plain TensorFlow, or beside Keras 3, load it as a SavedModel and call its serving signature:", "",
              "```python", "import tensorflow as tf", f"loaded = tf.saved_model.load('{SAVED_MODEL}')",
              "serve = loaded.signatures['serving_default']",
              "probabilities = list(serve(face=tf.constant(faces, tf.float32)).values())[0]", "```", "",
              "(Keras 3 itself can wrap it as a layer: `keras.layers.TFSMLayer('model', call_endpoint='serving_default')`.)", ""]
    return "\n".join(lines)


def export(uri: str, model: str, scenario: str, out: str | Path, fold: int | None = None,
           endpoint: str | None = None, target_recall: float = TARGET_RECALL) -> Path:
    out = Path(out)
    chosen = from_results(uri, model, scenario, fold, endpoint, target_recall)
    # without its augmentation layers: the exported model gives the same answer however it is called
    inference = ChosenModel(chosen.name, {**chosen.train, "augment": False}, chosen.preprocess, chosen.source)
    wrapped = wrap(inference.load(), chosen.size)
    c = card(chosen)
    # the model and its card appear together or not at all: an earlier export there stays until both are written
    with written_whole(out) as work:
        wrapped.save(str(work / SAVED_MODEL), save_format="tf")
        (work / CARD).write_text(json.dumps(c, indent=1, default=float))
        (work / "model_card.md").write_text(card_markdown(c))
    return out
