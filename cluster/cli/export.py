"""`painsearch export RESULTS_URI --model NAME --scenario S --out DIR`: a search's model, self-contained, with a card."""

from __future__ import annotations

import argparse
from pipelines.progress import say


def _export(args: argparse.Namespace) -> int:
    from analysis.export import export
    from pipelines.training.devices import describe

    say(f"export: the model is loaded and traced {describe()}")
    out = export(args.results, args.network, args.scenario, args.out, fold=args.fold, target_recall=args.target_recall)
    say(f"export: {out}/model (tf-keras SavedModel) and {out}/model_card.md (with its decision threshold)")
    return 0


def add(sub) -> None:
    from analysis.config import ReportConfig
    from cluster.cli.options import default, help_for

    e = sub.add_parser("export", help="a search's model as a self-contained Keras model with a model card",
                       description="Writes DIR/model (a tf-keras SavedModel that takes RGB face crops of any size "
                       "and needs no painsearch), DIR/model_card.json and DIR/model_card.md.")
    e.add_argument("results", metavar="RESULTS_URI", help="the --storage of a study")
    e.add_argument("--model", dest="network", required=True, metavar="NAME", help="the network")
    e.add_argument("--scenario", required=True, metavar="S", help="the scenario")
    e.add_argument("--fold", type=int, metavar="K", help="the fold (default: the best by validation)")
    e.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    e.add_argument("--target-recall", dest="target_recall", type=float, default=default(ReportConfig, "target_recall"),
                   metavar="R", help=help_for(ReportConfig, "target_recall", "the pain recall the search's threshold "
                                              "is chosen for, on its validation split; the card records it"))
    e.set_defaults(fn=_export)
