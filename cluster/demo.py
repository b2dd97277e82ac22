"""`painsearch demo`: the whole tool on the phantom, on this CPU, one progress line per stage.

phantom (`small`) -> prepare (Ray Data) -> the demo study (configs/demo.yaml: Ray Tune + Optuna, one-worker
trials trained inline in reused Tune actors) -> analyze (tables, figures, LIME heatmaps, index.html).
Rerunning resumes: the phantom and shards are reused, the study continues where it stopped, the report is
written again.
"""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.config import load_prepare_config
from pipelines.progress import say

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def run_demo(out: str) -> int:
    from analysis.config import LimeConfig, ReportConfig
    from analysis.report import analyze
    from cluster.local import ensure_ray
    from pipelines.phantom.synth import TRUTH_FILE, sources, synth
    from pipelines.shards.breakdown import breakdown
    from pipelines.shards.prepare import prepare
    from search.config import load_study_config
    from search.study import run_study

    t0 = time.time()
    root = Path(out).resolve()
    phantom = root / "phantom"

    def stage(n: int, text: str) -> None:
        say(f"[{n}/5 {time.time() - t0:5.0f} s] {text}")

    stage(1, f"rendering the small phantom into {phantom}")
    if not (phantom / "prepare.yaml").exists():
        synth(phantom, scale="small", seed=0)
    cfg = load_prepare_config(DEMO_CONFIG, {"out": str(root / "shards")})
    cfg = cfg.model_copy(update={"sources": cfg.sources.model_copy(update=sources(phantom))})
    stage(2, f"preparing shards with Ray Data ({cfg.workers} worker(s), background {cfg.preprocess.background})")
    ensure_ray(quiet=True)
    prepare(cfg, log=lambda m: say("      " + m))
    for row in breakdown(cfg.out)["datasets"]:
        say(f"      {row['dataset']:<10} subjects {row['subjects']:>3}  no pain {row['no_pain']:>4}  pain {row['pain']:>4}")
    study = load_study_config(DEMO_CONFIG, {"shards": cfg.out, "storage": str(root / "results")})
    n = len(study.models) * len(study.scenarios) * study.folds
    stage(3, f"the demo study: {', '.join(study.models)} x {', '.join(study.scenarios)} x {study.folds} folds "
             f"= {n} searches of {study.search.trials} trials")
    run_study(study, resume=True, log=lambda m: say("      " + m))
    stage(4, "analyzing: metrics with intervals, figures, LIME heatmaps, report")
    report = root / "report"
    # three re-initialised networks make the explanations' null on a laptop (a study's report takes five)
    config = ReportConfig(bootstrap=500, lime=LimeConfig(num_samples=150, images_per_class=4, n_segments=25,
                                                         null_seeds=3),
                          ratings=str(phantom / "cppain" / "ratings.csv"), phantom_truth=str(phantom / TRUTH_FILE))
    result = analyze(study.storage, report, config=config, log=lambda m: say("      " + m))
    stage(5, "done")
    head = result["headline"][["model", "scenario", "accuracy", "accuracy [95% CI]", "chance", "above chance",
                               "f1_macro [95% CI]"]]
    print(head.to_string(index=False))
    say(f"demo: finished in {time.time() - t0:.0f} s; open {result['index']}")
    return 0
