"""Global LIME heatmaps: per (network, scenario, predicted class, dataset), the average explanation in a common
face space, held against the same network re-initialised with several seeds (the model-randomisation check of
Adebayo et al., 2018): one re-initialised network's ratio varies too much from seed to seed to be a null, so
the table gives the spread of the seeds' ratios, the rank correlation between the trained map and each
re-initialised one, and whether the trained ratio lies outside that spread.

For the best fold of each (network, scenario) by validation score, images are picked by predicted class
(most confident first, as the reference method does) and explained with `lime` on SLIC superpixels; each
map (superpixel weights painted back onto the pixels) is warped into the canonical face with its scaled
landmarks (`analysis.face_space`) and averaged unstretched. Which images: the fold's test images; in the
external scenario also the PAIN-DB faces of the same model's validation split (faces it did not train
on), so that one model answers whether it looks at the same regions in CP and non-CP faces. Which weights:
the model that scored the test split; where `refit` trained the external model on every PAIN-DB face, the
chosen trial's own weights instead (the refit has no unseen PAIN-DB face left), and the table says so.
The explanations run as Ray tasks, one per (network, scenario). No face leaves a task: only warped maps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.config import LimeConfig
from analysis.face_space import (face_oval, mean_map, pain_mask, region_share, render, scaled_landmarks, template_regions,
                                 to_canonical, truth_regions)
from analysis.results import Results
from pipelines import retries
from pipelines.labels import CLASS_NAMES
from pipelines.progress import Progress, say
from search.layout import BEST_DIR, SearchKey

# `candidates`: the dataset's images the explained model scored; `predicted`: how many of them it gave this class.
# A class has no row for a dataset exactly when the model gave none of that dataset's candidates that class.
COLUMNS = ["model", "scenario", "class", "dataset", "images", "predicted", "candidates", "weights", "face_covered",
           "regions_from", "mass_in_pain_regions", "chance", "ratio", "ratio_randomised", "ratio_randomised_min",
           "ratio_randomised_max", "null_seeds", "outside_null", "rank_correlation_randomised"]
NO_PAIN_NOTE = ("For the no-pain class a map shows what argued for no pain: a ratio above 1 there means the network "
                "looked where pain shows and found none; it does not point at pain.")


def lime_map(model, img: np.ndarray, label: int, settings: LimeConfig) -> np.ndarray:
    """One LIME explanation of `label` for the image `img` (at the network's input size), its superpixel weights
    painted back onto the image's pixels (positive ones only, unless asked)."""
    from lime import lime_image
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    def predict(batch: np.ndarray) -> np.ndarray:
        return model(batch.astype(np.float32), training=False).numpy()

    segment = SegmentationAlgorithm("slic", n_segments=settings.n_segments, compactness=10, sigma=1, start_label=0)
    explainer = lime_image.LimeImageExplainer(random_state=settings.seed)
    exp = explainer.explain_instance(img.astype(np.double), predict, labels=(label,), top_labels=None,
                                     hide_color=settings.hide_color, num_samples=settings.num_samples,
                                     batch_size=64, segmentation_fn=segment, random_seed=settings.seed)
    weights = dict(exp.local_exp[label])
    heat = np.vectorize(lambda s: weights.get(s, 0.0))(exp.segments).astype(float)
    return np.clip(heat, 0, None) if settings.positive_only else heat


def lime_maps(model, x: np.ndarray, landmarks: list[np.ndarray], labels: list[int], settings: LimeConfig) -> list[np.ndarray]:
    """LIME maps of images `x`, each warped into the canonical face with `landmarks` given in the pixels of `x`."""
    return [to_canonical(lime_map(model, img, label, settings), pts) for img, pts, label in zip(x, landmarks, labels)]


def pick(preds: pd.DataFrame, per_class: int) -> pd.DataFrame:
    """Images selected by predicted class, `per_class` of each per dataset, most confident first."""
    preds = preds.assign(conf=preds[["prob_0", "prob_1"]].max(axis=1))
    picked = [g.sort_values(["conf", "image_id"], ascending=[False, True]).head(per_class)
              for _, g in preds.groupby(["dataset", "pred"])]
    return pd.concat(picked) if picked else preds.head(0)


def explain_search(store, shards: str, endpoint: str | None, train: dict[str, Any], weights: str, ids: list[str],
                   settings: dict[str, Any]) -> list[dict[str, Any]]:
    """A Ray task: score the candidate images `ids` with the model, pick per dataset and predicted class, and
    explain them with the trained network and with the same network re-initialised."""
    from pipelines.models.loader import load_from_store, rebuild
    from pipelines.shards.read import read_rows
    from pipelines.training.data import decode_images, stored_size
    from pipelines.training import determinism
    from pipelines.training.loop import INFERENCE_BATCH, predict

    determinism.apply(bool(train.get("deterministic", True)))  # the study's setting, whatever ran here before
    lime = LimeConfig.model_validate(settings)
    rows = read_rows(shards, endpoint, ids, ["image", "landmarks", "dataset"]).to_pandas()
    model = load_from_store(train, store, weights)
    size = model.input_shape[1]
    x = decode_images(rows["image"].tolist(), size)
    probs = predict(model, x, INFERENCE_BATCH)
    rows = rows.assign(prob_0=probs[:, 0], prob_1=probs[:, 1], pred=probs.argmax(axis=1), row=np.arange(len(rows)))
    chosen = pick(rows, lime.images_per_class)
    xs = x[chosen["row"].to_numpy()]
    pts = [scaled_landmarks(r.landmarks, stored_size(r.image), size) for r in chosen.itertuples()]
    labels = [int(p) for p in chosen["pred"]]
    trained = lime_maps(model, xs, pts, labels, lime)
    # per seed, the maps of the same images and classes by the network re-initialised with that seed
    randomised = [lime_maps(rebuild(train, seed=lime.seed + s), xs, pts, labels, lime) for s in range(lime.null_seeds)]
    counts = rows.groupby(["dataset", "pred"]).size()
    candidates = rows.groupby("dataset").size()
    return [{"dataset": d, "pred": p, "map": m, "random_maps": [seed_maps[i] for seed_maps in randomised],
             "predicted": int(counts[(d, p)]), "candidates": int(candidates[d])}
            for i, (d, p, m) in enumerate(zip(chosen["dataset"], labels, trained))]


def _weights_and_images(res: Results, key: SearchKey) -> tuple[str, str, list[str]]:
    """(weights file in best/, how the table names them, candidate image ids) of one search."""
    from search.folds import fold_table, role_ids

    choice = res.choices[key]
    ids = role_ids(fold_table(res.store, key))
    if key.scenario != "external":
        return choice["scored_weights"], "scored", sorted(ids["test"])
    candidates = sorted(ids["test"] | ids["val"])  # CP faces, and the PAIN-DB faces the chosen trial did not train on
    if choice["scored"] == "refit":
        return choice["chosen_weights"], "chosen trial (the refit trained on every PAIN-DB face)", candidates
    return choice["scored_weights"], "scored", candidates


def find_truth(res: Results) -> str | None:
    """The phantom's `_phantom_truth.csv` beside the sources the shards were prepared from, when they are a phantom."""
    import json

    from pipelines.phantom.synth import TRUTH_FILE
    from pipelines.shards.schema import REPORT
    from pipelines.storage import open_store

    try:
        shards = open_store(res.config["shards"], res.config.get("s3_endpoint"))
        sources = json.loads(shards.read_bytes(REPORT))["config"]["sources"]
    except Exception:  # the shards may live where this machine cannot reach: the template regions stand in
        return None
    for location in filter(None, sources.values()):
        for folder in (Path(location).parent, Path(location).parent.parent):
            if (folder / TRUTH_FILE).is_file():
                return str(folder / TRUTH_FILE)
    return None


def null_of(heat: np.ndarray, face: np.ndarray, seeds: list[list[np.ndarray]], mask: np.ndarray) -> dict[str, Any]:
    """The null of one trained mean map `heat`: per seed, the mean of that seed's re-initialised maps, its pain-region
    ratio and its Spearman rank correlation with `heat` over the face pixels both reach (`face`)."""
    from scipy.stats import spearmanr

    ratios, ranks = [], []
    for maps in seeds:
        random_heat, random_covered = mean_map(maps)
        share, chance = region_share(random_heat, random_covered, mask)
        ratios.append(share / chance if chance else float("nan"))
        both = face & random_covered
        a, b = heat[both], random_heat[both]
        ranks.append(float(spearmanr(a, b).statistic) if both.sum() > 2 and a.std() > 0 and b.std() > 0 else float("nan"))
    r = np.array(ratios, float)
    finite = r[np.isfinite(r)]
    return {"ratio_randomised": float(finite.mean()) if len(finite) else float("nan"),
            "ratio_randomised_min": float(finite.min()) if len(finite) else float("nan"),
            "ratio_randomised_max": float(finite.max()) if len(finite) else float("nan"), "null_seeds": len(seeds),
            "rank_correlation_randomised": float(np.nanmean(ranks)) if np.isfinite(ranks).any() else float("nan")}


def global_heatmaps(res: Results, out: Path, settings: LimeConfig, truth: str | None = None,
                    log: Callable[[str], None] = say) -> dict[str, Any]:
    import ray

    out.mkdir(parents=True, exist_ok=True)
    cfg = res.config
    truth = truth or find_truth(res)
    regions = truth_regions(truth) if truth else template_regions()
    mask = pain_mask(regions)
    face = face_oval()
    ok = res.searches[res.searches["status"] == "ok"]
    task = ray.remote(num_cpus=1, max_retries=retries.LIME_TASK)(explain_search)
    refs = {}
    for (model, scenario), g in ok.groupby(["model", "scenario"]):
        best = g.sort_values("best_score", ascending=cfg["search"]["metric"] == "val_loss").iloc[0]
        key = SearchKey(model, scenario, int(best["fold"]))
        weights, named, ids = _weights_and_images(res, key)
        refs[task.remote(res.store, cfg["shards"], cfg.get("s3_endpoint"), res.choices[key]["train"],
                         key.of(BEST_DIR, weights), ids, settings.model_dump())] = (model, scenario, named)
    maps: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    progress, waiting = Progress("analyze: LIME", len(refs), "searches explained", log), list(refs)
    while waiting:  # each search's maps as its task ends
        [ref], waiting = ray.wait(waiting, num_returns=1)
        progress.update(len(refs) - len(waiting))
        model, scenario, named = refs[ref]
        for r in ray.get(ref):
            entry = maps.setdefault((model, scenario, r["pred"], r["dataset"]), {
                "maps": [], "random": [], "weights": named, "predicted": r["predicted"], "candidates": r["candidates"]})
            entry["maps"].append(r["map"])
            entry["random"].append(r["random_maps"])
    figs, rows = {}, []
    for (model, scenario, pred, dataset), entry in sorted(maps.items()):
        heat, covered = mean_map(entry["maps"])
        share, chance = region_share(heat, covered, mask)
        null = null_of(heat, covered & face, [list(seed) for seed in zip(*entry["random"])], mask)
        cls = CLASS_NAMES[pred]
        title = f"{model}, {scenario}, {cls}, {dataset} ({len(entry['maps'])})"
        p = out / f"{model}_{scenario}_{cls.replace(' ', '_')}_{dataset}.png"
        render(heat, title, p)
        np.save(out / f"{p.stem}.npy", heat.astype(np.float32))
        figs[title] = p
        rows.append({"model": model, "scenario": scenario, "class": cls, "dataset": dataset,
                     "images": len(entry["maps"]), "predicted": entry["predicted"], "candidates": entry["candidates"],
                     "weights": entry["weights"], "face_covered": float(covered[face].mean()),
                     "regions_from": "phantom truth" if truth else "template", "mass_in_pain_regions": share,
                     "chance": chance, "ratio": share / chance if chance else float("nan"), **null})
        ratio, low, high = rows[-1]["ratio"], null["ratio_randomised_min"], null["ratio_randomised_max"]
        # outside every seed's ratio; undecided (NaN) where a ratio is missing
        rows[-1]["outside_null"] = bool(ratio < low or ratio > high) if np.isfinite([ratio, low, high]).all() else None
    return {"figures": figs, "regions": pd.DataFrame(rows, columns=COLUMNS), "regions_from": truth or "template"}
