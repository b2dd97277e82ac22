"""`painsearch analyze RESULTS_URI --out DIR`: tables, figures, LIME heatmaps and index.html from a results store."""

from __future__ import annotations

import argparse

from analysis.config import CALIBRATIONS, LimeConfig, ReportConfig
from cluster.cli.options import default, help_for


def _analyze(args: argparse.Namespace) -> int:
    from analysis.report import analyze
    from pipelines.config import validate

    lime = None
    if not args.no_lime:
        from cluster.local import ensure_ray

        ensure_ray(num_cpus=args.num_cpus)
        lime = validate(LimeConfig, dict(num_samples=args.lime_samples, images_per_class=args.lime_images,
                                         hide_color=args.lime_hide, positive_only=not args.lime_all_weights,
                                         n_segments=args.lime_segments, null_seeds=args.lime_null_seeds),
                        "the LIME options")
    config = validate(ReportConfig, dict(bootstrap=args.bootstrap, lime=lime, ratings=args.ratings,
                                         phantom_truth=args.phantom_truth, target_recall=args.target_recall,
                                         calibration=args.calibration), "the report options")
    result = analyze(args.results, args.out, config=config)
    print(result["headline"][["model", "scenario", "accuracy", "f1_pain", "f1_macro [95% CI]"]].to_string(index=False))
    return 0


def add(sub) -> None:
    an = sub.add_parser("analyze", help="tables, figures, LIME heatmaps and index.html from a results store",
                        description="Reads a results store (local or S3) and writes DIR/index.html (self-contained), "
                        "DIR/report.md, DIR/tables/ (CSV and JSON) and DIR/figures/. Only the search protocol's "
                        "choices reach the test numbers. No face appears in the report.")
    an.add_argument("results", metavar="RESULTS_URI", help="the --storage of a study: folder or s3://bucket/prefix")
    an.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    an.add_argument("--ratings", metavar="CSV", help=ReportConfig.model_fields["ratings"].description)
    an.add_argument("--phantom-truth", dest="phantom_truth", metavar="CSV",
                    help=f"{ReportConfig.model_fields['phantom_truth'].description} (default: found beside the "
                    f"phantom the shards were prepared from)")
    an.add_argument("--bootstrap", type=int, default=default(ReportConfig, "bootstrap"), metavar="N",
                    help=help_for(ReportConfig, "bootstrap"))
    an.add_argument("--target-recall", dest="target_recall", type=float, default=default(ReportConfig, "target_recall"),
                    metavar="R", help=help_for(ReportConfig, "target_recall"))
    an.add_argument("--calibration", choices=CALIBRATIONS, default=default(ReportConfig, "calibration"),
                    help=help_for(ReportConfig, "calibration"))
    an.add_argument("--no-lime", dest="no_lime", action="store_true", help="skip the LIME heatmaps")
    an.add_argument("--lime-samples", dest="lime_samples", type=int, default=default(LimeConfig, "num_samples"),
                    metavar="N", help=help_for(LimeConfig, "num_samples"))
    an.add_argument("--lime-images", dest="lime_images", type=int, default=default(LimeConfig, "images_per_class"),
                    metavar="N", help=help_for(LimeConfig, "images_per_class"))
    an.add_argument("--lime-segments", dest="lime_segments", type=int, default=default(LimeConfig, "n_segments"),
                    metavar="N", help=help_for(LimeConfig, "n_segments"))
    an.add_argument("--lime-null-seeds", dest="lime_null_seeds", type=int, default=default(LimeConfig, "null_seeds"),
                    metavar="N", help=help_for(LimeConfig, "null_seeds"))
    an.add_argument("--lime-hide", dest="lime_hide", type=float, default=default(LimeConfig, "hide_color"), metavar="V",
                    help=help_for(LimeConfig, "hide_color"))
    an.add_argument("--lime-all-weights", dest="lime_all_weights", action="store_true",
                    help="keep negative LIME weights too (default: positive only)")
    an.add_argument("--num-cpus", dest="num_cpus", type=int, help="CPUs of the in-process Ray (default: all)")
    an.set_defaults(fn=_analyze)
