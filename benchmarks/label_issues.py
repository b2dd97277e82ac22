"""How well `analyze` finds mislabelled frames: labels flipped on purpose on the phantom, found again or not.

Per repeat r (phantom seed r, training seed r): the `learn` phantom's PAIN-DB sources, prepared at 40 px; a
known share of the pool's labels flipped (seeded, either class alike); weinet trained on subject folds as the
study makes them (`search.folds`) with fixed settings, so every image is scored once by a network that never
trained on it; then `analysis.label_issues` on those out-of-fold scores, as `analyze` runs it. Reports the
finder's precision (flagged frames that were flipped) and recall (flipped frames flagged), pooled over repeats
and per repeat. Writes BENCHMARKS.md (`label_issues`).

    .venv/bin/python benchmarks/label_issues.py [--repeats 3] [--share 0.1] [--folds 5]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipelines.bootstrap  # noqa: E402,F401  (TensorFlow's environment, from its one home)
from pipelines.bootstrap import torch_first  # noqa: E402

torch_first()  # this process detects faces and trains

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.label_issues import label_issues  # noqa: E402
from benchmarks.phantom_training import POOL, phantom_arrays, scored, train  # noqa: E402
from benchmarks.report import machine, save_results, write_block  # noqa: E402
from pipelines.phantom.cp_shift import CPShift  # noqa: E402
from pipelines.phantom.synth import SCALES  # noqa: E402
from search.folds import make_folds  # noqa: E402

SIZE, EPOCHS = 40, 12


def one_repeat(work: Path, repeat: int, share: float, folds: int) -> dict:
    import tf_keras as keras

    data = phantom_arrays(work / f"r{repeat}", SCALES["learn"], SIZE, repeat, CPShift(), POOL)
    rng = np.random.default_rng([repeat, 1])
    flipped = rng.choice(len(data), int(round(share * len(data))), replace=False)
    data.loc[data.index[flipped], "label"] = 1 - data.loc[data.index[flipped], "label"]
    preds = []
    table = make_folds(data.drop(columns=["x"]), "subject_kfold", folds, repeat, POOL)
    for fold, rows in table.groupby("fold"):
        role = data["image_id"].map(dict(zip(rows["image_id"], rows["role"])))
        model = train("weinet", data[role.isin(["train", "val"])], SIZE, EPOCHS, repeat, None)
        preds.append(scored(model, data[role == "test"], repeat, model="weinet", scenario="subject_kfold", fold=fold))
        keras.backend.clear_session()
    shutil.rmtree(work / f"r{repeat}", ignore_errors=True)
    found = set(label_issues(pd.concat(preds, ignore_index=True))["label_issues"]["image_id"])
    truth = set(data["image_id"].iloc[flipped])
    return {"repeat": repeat, "images": len(data), "flipped": len(truth), "flagged": len(found),
            "flagged_and_flipped": len(found & truth)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--share", type=float, default=0.1, help="share of the pool's labels flipped")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="painsearch-labels-"))
    atexit.register(shutil.rmtree, work, True)  # what the benchmark wrote goes with it
    t0 = time.time()
    rows = [one_repeat(work, r, args.share, args.folds) for r in range(args.repeats)]
    seconds = time.time() - t0
    df = pd.DataFrame(rows)
    df["precision"] = df["flagged_and_flipped"] / df["flagged"].where(df["flagged"] > 0)
    df["recall"] = df["flagged_and_flipped"] / df["flipped"]
    total = df[["images", "flipped", "flagged", "flagged_and_flipped"]].sum()
    precision = total["flagged_and_flipped"] / max(total["flagged"], 1)
    recall = total["flagged_and_flipped"] / total["flipped"]
    lines = [machine(), f"Command: `.venv/bin/python benchmarks/label_issues.py --repeats {args.repeats} --share "
             f"{args.share} --folds {args.folds}` (the `learn` phantom's PAIN-DB sources at {SIZE} px, weinet "
             f"{EPOCHS} epochs per subject fold; {seconds / 60:.0f} min).", "",
             "| repeat | images | flipped | flagged | flagged and flipped | precision | recall |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.repeat} | {r.images} | {r.flipped} | {r.flagged} | {r.flagged_and_flipped} | {r.precision:.2f} "
              f"| {r.recall:.2f} |" for r in df.itertuples()]
    lines += [f"| all | {total['images']} | {total['flipped']} | {total['flagged']} | {total['flagged_and_flipped']} "
              f"| **{precision:.2f}** | **{recall:.2f}** |", "",
              f"Chance precision (flagging at random) is the flipped share, {args.share:.2f}."]
    block = "\n".join(lines)
    print(block)
    write_block(Path(args.write), "label_issues", "Finding mislabelled frames (issue 24)", block)
    save_results("label_issues", {"repeats": rows, "precision": float(precision), "recall": float(recall),
                                  "seconds": seconds})


if __name__ == "__main__":
    main()
