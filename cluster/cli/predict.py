"""`painsearch predict MODEL INPUT... --out DIR`: a study's model on new images, folders and videos."""

from __future__ import annotations

import argparse
import sys


def _progress(done: int, total: int, seconds: float) -> None:
    """A progress bar with the time left, on one terminal line."""
    width = 30
    filled = int(width * done / max(total, 1))
    left = seconds / done * (total - done) if done else 0.0
    sys.stderr.write(f"\rpredict [{'#' * filled}{'.' * (width - filled)}] {done}/{total} inputs, "
                     f"{seconds:.0f} s, about {left:.0f} s left")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _predict(args: argparse.Namespace) -> int:
    from analysis.chosen_model import resolve
    from analysis.predict import predict

    chosen = resolve(args.model, args.network, args.scenario, args.fold)
    table = predict(chosen, args.inputs, args.out, explain=args.explain, every=args.every,
                    progress=_progress if sys.stderr.isatty() or args.progress else None)
    pain = int((table["label"] == "pain").sum()) if len(table) else 0
    print(f"predict: {len(table)} faces scored with {chosen.name} ({pain} pain); {args.out}/predictions.csv, "
          f"and the inputs without a usable face in {args.out}/predict_report.json")
    return 0


def add(sub) -> None:
    from analysis.predict import FRAMES_PER_SECOND

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
    p.add_argument("--explain", action="store_true", help="a LIME map over every face, and the normalised one")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    p.set_defaults(fn=_predict)
