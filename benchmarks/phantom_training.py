"""What the phantom benchmarks share: a phantom rendered and prepared into arrays, a network trained on them with
fixed settings (no search: these benchmarks measure the data and the analysis, not a search), and its scores.

Import it after `pipelines.bootstrap` and `torch_first()`, as every benchmark does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.config import prepare_config, train_config
from pipelines.phantom.cp_shift import CPShift
from pipelines.phantom.synth import Scale, sources, synth
from pipelines.shards.prepare import prepare
from pipelines.shards.read import read_table
from pipelines.shards.schema import ID_COLUMNS, image_ids
from pipelines.training.data import decode_images
from pipelines.training.loop import INFERENCE_BATCH, fit_arrays, predict

POOL = ("unbc", "mintpain", "delaware")
EXTERNAL = ("cppain",)
STANDIN_SEED = 7  # the pretrained networks' stand-in ImageNet weights (random: none can be fetched here)
# fixed settings per network, as the demo trains (configs/demo.yaml: batch 8, no augmentation); weinet's learning
# rate the middle of the demo's range, the pretrained networks' the registry's (vgg16: the lighter pretrained
# network the test suite runs the benchmarks with)
SETTINGS = {"weinet": {"learning_rate": 3e-4, "batch_size": 8, "augment": False},
            **{net: {"learning_rate": 1e-4, "batch_size": 8, "augment": False, "finetune_depth": 0.0}
               for net in ("vgg16", "resnet50")}}


def phantom_arrays(folder: Path, scale: Scale, size: int, seed: int, shift: CPShift,
                   datasets: tuple[str, ...]) -> pd.DataFrame:
    """A phantom rendered and prepared (every frame, `size` px) under `folder`: one row per image with its id,
    label, dataset, subject, sequence and its decoded uint8 pixels (`x`)."""
    synth(folder, scale, seed=seed, shift=shift, datasets=datasets)
    out = folder / "shards"
    prepare(prepare_config({"sources": sources(folder, datasets), "out": str(out), "engine": "local",
                            "frames_per_subject_class": 0, "chunk_size": 64,
                            "preprocess": {"size": size, "background": "grabcut"}}), log=lambda m: None)
    table = read_table(str(out), columns=["image", *dict.fromkeys(["label", *ID_COLUMNS])])
    df = table.drop_columns(["image"]).to_pandas()
    df.insert(0, "image_id", image_ids(*(df[c] for c in ID_COLUMNS)))
    df["x"] = list(decode_images(table.column("image").to_pylist(), size, np.uint8))
    return df


def train(network: str, rows: pd.DataFrame, size: int, epochs: int, seed: int, weights_dir: str | None):
    """`network` trained on `rows` (`x`, `label`) with its fixed settings; the last epoch's model."""
    cfg = train_config({"model": network, "size": size, "epochs": epochs, "patience": 0, "seed": seed,
                        "weights_dir": weights_dir, "checkpoint_every_s": 3600, **SETTINGS[network]})
    x, y = np.stack(rows["x"].to_list()), rows["label"].to_numpy().astype(np.int64)
    return fit_arrays(cfg, (x, y), None, lambda metrics, saved: None)


def scored(trained, rows: pd.DataFrame, repeat: int, **tags) -> pd.DataFrame:
    """`rows` with the `trained` model's probabilities, as a predictions table with `tags` as columns (`model`,
    say); subjects and videos named per repeat (the phantom's people are new in every repeat)."""
    p = predict(trained, np.stack(rows["x"].to_list()), INFERENCE_BATCH)
    return pd.DataFrame({"image_id": rows["image_id"].to_numpy(), "dataset": rows["dataset"].to_numpy(),
                         "subject": [f"r{repeat}-{s}" for s in rows["subject"]], "sequence": rows["sequence"].to_numpy(),
                         "label": rows["label"].to_numpy(), "prob_0": p[:, 0], "prob_1": p[:, 1], "repeat": repeat, **tags})
