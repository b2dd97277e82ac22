"""`painsearch demo`: the whole tool on the phantom, on this CPU, one progress line per stage."""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.config import load_prepare_config

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def run_demo(out: str) -> int:
    from cluster.local import ensure_ray
    from pipelines.datasets.phantom import synth
    from pipelines.inspect import breakdown
    from pipelines.prepare import prepare

    t0 = time.time()
    root = Path(out).resolve()
    phantom = root / "phantom"
    print(f"[1/3] rendering the small phantom into {phantom}", flush=True)
    synth(phantom, scale="small", seed=0)
    cfg = load_prepare_config(DEMO_CONFIG, {"out": str(root / "shards")})
    cfg = cfg.model_copy(update={"sources": cfg.sources.model_copy(update={
        "unbc": str(phantom / "unbc"), "mintpain": str(phantom / "mintpain"),
        "manifest": str(phantom / "delaware" / "manifest.csv"), "cppain": str(phantom / "cppain")})})
    print(f"[2/3] preparing shards with Ray Data ({cfg.workers} worker(s), background {cfg.preprocess.background})", flush=True)
    ensure_ray(num_cpus=cfg.workers * cfg.threads_per_worker)
    prepare(cfg, log=lambda m: print("      " + m, flush=True))
    print("[3/3] the PAIN-DB breakdown (Table 2)", flush=True)
    table = breakdown(cfg.out)
    for row in table["datasets"]:
        print(f"      {row['dataset']:<10} subjects {row['subjects']:>3}  no pain {row['no_pain']:>4}  pain {row['pain']:>4}")
    print(f"demo: done in {time.time() - t0:.0f} s; shards at {cfg.out}. The search (painsearch search run) and the "
          "report (painsearch analyze) are not built yet, so the demo stops after data preparation.")
    return 0
