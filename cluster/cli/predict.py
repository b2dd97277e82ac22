"""`painsearch predict MODEL INPUT... --out DIR`: a study's model on new images, folders and videos."""

from __future__ import annotations

import argparse
import time

from pipelines.progress import Progress, say


def _predict(args: argparse.Namespace) -> int:
    from analysis.chosen_model import resolve
    from analysis.predict import predict
    from pipelines.training.devices import describe

    chosen = resolve(args.model, args.network, args.scenario, args.fold, target_recall=args.target_recall)
    say(f"predict: the network runs {describe()}; a face is pain at a pain probability of {chosen.threshold:.3f} "
          f"or more ({chosen.threshold_from})")
    bar = None

    def progress(done: int, total: int, seconds: float) -> None:
        nonlocal bar
        bar = bar or Progress("predict", total, "inputs", started=time.time() - seconds)
        bar.update(done)

    table = predict(chosen, args.inputs, args.out, explain=args.explain, every=args.every, progress=progress,
                    names=args.names, mapping=args.mapping)
    pain = int((table["label"] == "pain").sum()) if len(table) else 0
    say(f"predict: {len(table)} faces scored with {chosen.name} ({pain} pain); {args.out}/predictions.csv, "
          f"and the inputs without a usable face in {args.out}/predict_report.json")
    return 0


def add(sub) -> None:
    from analysis.config import ReportConfig
    from analysis.predict import FRAMES_PER_SECOND, MAPPING_FILE, NAMES
    from cluster.cli.options import default, help_for

    p = sub.add_parser("predict", help="score new faces (images, folders, videos) with a study's model",
                       description="Every input goes through the preprocessing the model's shards had (MTCNN, "
                       "background removal, size), then the network. MODEL is a results store (with --model and "
                       "--scenario; the best fold by validation unless --fold) or a folder `painsearch export` wrote.")
    p.add_argument("model", metavar="MODEL", help="a results store (folder or s3://...) or an exported model folder")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="images, folders of images, or videos")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for predictions.csv/.parquet and the report")
    p.add_argument("--model", dest="network", metavar="NAME", help="the network, with a results store")
    p.add_argument("--scenario", metavar="S", help="the scenario, with a results store")
    p.add_argument("--fold", type=int, metavar="K", help="the fold (default: the best by validation)")
    p.add_argument("--every", type=int, metavar="N",
                   help=f"score every Nth frame of a video (default: {FRAMES_PER_SECOND:g} frames a second)")
    p.add_argument("--target-recall", dest="target_recall", type=float, default=default(ReportConfig, "target_recall"),
                   metavar="R", help=help_for(ReportConfig, "target_recall", "with a results store: the pain recall "
                                              "the search's threshold is chosen for, on its validation split (an "
                                              "exported model keeps the threshold its card records)"))
    p.add_argument("--names", choices=NAMES, default=NAMES[0],
                   help="how inputs appear in the outputs: pseudonym (default; the outputs may leave the machine and "
                   "file names often name people) or raw (the paths as given)")
    p.add_argument("--mapping", metavar="FILE", help=f"where the pseudonyms' mapping to paths is kept (default: "
                   f"{MAPPING_FILE} in the folder that holds every input; a later run reuses its pseudonyms)")
    p.add_argument("--explain", action="store_true", help="a LIME map over every face, and the normalised one")
    p.set_defaults(fn=_predict)
