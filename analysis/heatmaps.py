"""Global LIME heatmaps per network x class x dataset, computed as Ray tasks (one per model x scenario)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.explain import LimeSettings, average, explain_images, region_share, render
from analysis.results import Results

CLASS = {0: "no pain", 1: "pain"}


def _pick(preds: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Test images selected by predicted class, `per_class` of each per dataset, most confident first."""
    preds = preds.assign(conf=preds[["prob_0", "prob_1"]].max(axis=1))
    picked = [g.sort_values(["conf", "image_id"], ascending=[False, True]).head(per_class)
              for _, g in preds.groupby(["dataset", "pred"])]
    return pd.concat(picked) if picked else preds.head(0)


def _explain_task(store, endpoint: str | None, search_path: str, shards: str, train: dict[str, Any],
                  chosen: list[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """`store` is the results `Store` itself: it travels to the worker with the driver's S3 credentials."""
    from pipelines.shards import read_rows

    table = read_rows(shards, endpoint, {c["image_id"] for c in chosen}, ["image", "landmarks"])
    rows = {r["image_id"]: r for r in table.to_pylist()}
    chosen = [c for c in chosen if c["image_id"] in rows]
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.h5")
        Path(local).write_bytes(store.read_bytes(search_path, "best", "model.h5"))
        maps = explain_images(local, train, [rows[c["image_id"]]["image"] for c in chosen],
                              [rows[c["image_id"]]["landmarks"] for c in chosen], [int(c["pred"]) for c in chosen],
                              LimeSettings(**settings))
    return [{"dataset": c["dataset"], "pred": int(c["pred"]), "map": m} for c, m in zip(chosen, maps)]


def global_heatmaps(res: Results, out: Path, num_samples: int = 300, images_per_class: int = 8,
                    hide_color: float | None = 0.0, positive_only: bool = True, n_segments: int = 40,
                    seed: int = 0) -> dict[str, Any]:
    import ray

    out.mkdir(parents=True, exist_ok=True)
    cfg = res.config
    settings = {"num_samples": num_samples, "images_per_class": images_per_class, "hide_color": hide_color,
                "positive_only": positive_only, "n_segments": n_segments, "seed": seed}
    ok = res.searches[res.searches["status"] == "ok"]
    task = ray.remote(num_cpus=1, max_retries=1)(_explain_task)
    refs = {}
    for (model, scenario), g in ok.groupby(["model", "scenario"]):
        best = g.sort_values("best_score", ascending=cfg["search"]["metric"] == "val_loss").iloc[0]
        path = f"searches/{model}/{scenario}/fold-{int(best['fold'])}"
        trial = json.loads(res.store.read_bytes(path, "best", "trial.json"))
        preds = res.predictions[(res.predictions["model"] == model) & (res.predictions["scenario"] == scenario)
                                & (res.predictions["fold"] == int(best["fold"]))]
        chosen = _pick(preds, images_per_class, seed)[["image_id", "dataset", "pred"]].to_dict("records")
        from pipelines.models import get_spec

        train = {"model": model, "size": cfg["train"]["size"] or get_spec(model).paper_size,
                 "preprocessing": cfg["train"]["preprocessing"], "params": trial["params"]}
        refs[task.remote(res.store, cfg.get("s3_endpoint"), path, cfg["shards"], train, chosen, settings)] = (model, scenario)
    maps: dict[tuple[str, int, str], list[np.ndarray]] = {}
    for ref, (model, scenario) in refs.items():
        for r in ray.get(ref):
            maps.setdefault((model, r["pred"], r["dataset"]), []).append(r["map"])
    figs, rows = {}, []
    for (model, pred, dataset), ms in sorted(maps.items()):
        heat = average(ms)
        share, chance = region_share(heat)
        title = f"{model}, {CLASS[pred]}, {dataset} ({len(ms)})"
        p = out / f"{model}_{CLASS[pred].replace(' ', '_')}_{dataset}.png"
        render(heat, title, p)
        np.save(out / f"{p.stem}.npy", heat.astype(np.float32))
        figs[title] = p
        rows.append({"model": model, "class": CLASS[pred], "dataset": dataset, "images": len(ms),
                     "mass_in_pain_regions": share, "chance": chance, "ratio": share / chance if chance else float("nan")})
    return {"figures": figs, "regions": pd.DataFrame(rows, columns=["model", "class", "dataset", "images",
                                                                      "mass_in_pain_regions", "chance", "ratio"])}
