"""`painsearch raters RATINGS_CSV`: how far the CP-PAIN raters agree (the paper's Table 4)."""

from __future__ import annotations

import argparse
import json


def _raters(args: argparse.Namespace) -> int:
    from analysis.icc import SCALES, rater_agreement
    from pipelines.sources.cppain import read_ratings

    result = rater_agreement(read_ratings(args.ratings))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def rows(block: dict, label: str) -> None:
        for scale, r in block.items():
            print(f"{label:<14}{SCALES[scale]:<12}{r['icc2_1']:>7.2f} [{r['ci95_2_1'][0]:5.2f}, {r['ci95_2_1'][1]:5.2f}]"
                  f"{r['icc2_k']:>7.2f} [{r['ci95_2_k'][0]:5.2f}, {r['ci95_2_k'][1]:5.2f}]  {r['category']:<13}"
                  f"{r['n_targets']:>4} x {r['n_raters']}")

    print(f"{'stimulus':<14}{'scale':<12}{'ICC(2,1) [95% CI]':>22}{'ICC(2,k) [95% CI]':>22}  {'(2,k) is':<13}images x raters")
    rows(result["scales"], "all")
    for stimulus, block in result["by_stimulus"].items():
        rows(block, stimulus)
    print(f"pain by consensus (no rater scored FACS > 0 means no pain): {result['consensus_pain_share']:.1%} "
          f"of {result['n_images']} images")
    return 0


def add(sub) -> None:
    ra = sub.add_parser("raters", help="how far raters agree: ICC(2,1), ICC(2,k) with 95%% CI per scale and stimulus",
                        description="Two-way random-effects, absolute-agreement ICCs (Shrout and Fleiss case 2, "
                        "intervals of McGraw and Wong) for the FACS score, NCAPC and Wong-Baker of a CP-PAIN "
                        "ratings.csv, overall and by stimulus (the paper's Table 4). The category (Fleiss) is that "
                        "of ICC(2,k), the agreement of the raters' consensus, as the paper classes it.")
    ra.add_argument("ratings", help="ratings.csv (columns documented in the README)")
    ra.add_argument("--json", action="store_true", help="print JSON")
    ra.set_defaults(fn=_raters)
