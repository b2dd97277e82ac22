"""`painsearch export`: a search's model as a self-contained Keras model, with a model card.

The folder holds `model/` (a tf-keras SavedModel that takes RGB face crops in [0, 255] of any size, resizes
them to the network's input and returns class probabilities: it loads with
`tf.keras.models.load_model`, TF_USE_LEGACY_KERAS=1, and needs no painsearch), `model_card.json` and
`model_card.md` (what it was trained on, how, how well, and what it is not for).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from analysis.chosen_model import CARD, SAVED_MODEL, ChosenModel, from_results
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
    """The model card: data, protocol, choice, test metrics with intervals and chance, preprocessing, limits."""
    from analysis.results import load
    from analysis.summary import summary
    from pipelines.shards.breakdown import breakdown

    study, choice = chosen.source["study"], chosen.source["choice"]
    cfg = study["config"]
    search = chosen.source["search"]
    res = load(chosen.source["results"], chosen.source.get("endpoint"))
    preds = res.predictions[(res.predictions["model"] == search["model"]) &
                            (res.predictions["scenario"] == search["scenario"])]
    row = summary(preds, n_boot=1000, seed=cfg.get("seed", 0)).iloc[0].to_dict()
    metrics = {name: {"mean_over_folds": row[f"{name}_mean"], "pooled": row[name],
                      "ci95": [row[f"{name}_ci_low"], row[f"{name}_ci_high"]]}
               for name in ("accuracy", "f1_pain", "f1_macro", "roc_auc", "precision_pain", "recall_pain")}
    try:
        data = breakdown(cfg["shards"], cfg.get("s3_endpoint"))
    except Exception:  # the shards may live where this machine cannot reach: the card says so
        data = {"datasets": [], "note": "the shards could not be read where the model was exported"}
    return {
        "name": chosen.name, "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classes": list(CLASS_NAMES),
        "input": "RGB face crops in [0, 255], any size (resized to the network's input), as `preprocessing` makes them",
        "output": "class probabilities, in the order of `classes`",
        "data": {"breakdown": data.get("datasets", []), "pool": cfg["pool"], "external": cfg["external"],
                 "subjects": "pseudonyms only"},
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


def card_markdown(c: dict[str, Any]) -> str:
    m = c["test_metrics"]
    lines = [f"# Model card: {c['name']}", "", c["intended_use_and_limits"], "",
             "## How well it did", "",
             f"On the {c['scenario']} scenario's test images ({c['test_images']} images, subjects resampled for the "
             f"intervals); always answering the commoner class would score {c['chance_accuracy']:.3f}.", "",
             "| metric | mean over folds | pooled [95 % CI] |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean_over_folds']:.3f} | {v['pooled']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] |"
              for k, v in m.items()]
    lines += ["", "## What it was trained on", "", f"Pool: {', '.join(c['data']['pool'])}; external test set: "
              f"{', '.join(c['data']['external'])}. Subjects appear as pseudonyms only.", ""]
    if c["data"]["breakdown"]:
        lines += ["| dataset | subjects | no pain | pain |", "|---|---|---|---|"]
        lines += [f"| {d['dataset']} | {d['subjects']} | {d['no_pain']} | {d['pain']} |" for d in c["data"]["breakdown"]]
    lines += ["", "## Protocol and choice", "", c["protocol"], "",
              f"Chosen on validation data: {json.dumps(c['training']['chosen'])}, best epoch {c['training']['epoch']}; "
              f"scored: {c['training']['scored'].replace('_', ' ')}.", "",
              "## Preprocessing (apply it to new faces)", "", "```", json.dumps(c["preprocessing"], indent=1), "```", "",
              "## Loading it", "", "```python", "import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'",
              "import tensorflow as tf", f"model = tf.keras.models.load_model('{SAVED_MODEL}', compile=False)",
              "probabilities = model(faces)  # RGB in [0, 255], N x H x W x 3", "```", ""]
    return "\n".join(lines)


def export(uri: str, model: str, scenario: str, out: str | Path, fold: int | None = None,
           endpoint: str | None = None) -> Path:
    out = Path(out)
    chosen = from_results(uri, model, scenario, fold, endpoint)
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
