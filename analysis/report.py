"""`painsearch analyze`: a results store -> tables (CSV, JSON), figures (PNG), heatmaps, index.html, report.md.

index.html is one self-contained page: figures are embedded as data URIs, no script or style is
fetched, so it opens offline and can be mailed. No face of any subject appears in it; subjects in
tables are the shards' pseudonyms. The page checks on load that every figure decoded and records
it in `<body data-figures-loaded="N/M">` (what the browser test reads).
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import figures
from analysis.calibration import BINS, calibration_table
from analysis.operating_point import operating_points
from analysis.comparisons import compare
from analysis.config import ReportConfig
from analysis.lime_heatmaps import NO_PAIN_NOTE
from analysis.label_issues import TOP, label_issues, top_frames
from analysis.results import Results, load
from analysis.scenario_gap import central_result
from analysis.summary import PER_CLASS, per_fold, summary
from pipelines.storage.folders import written_whole
from pipelines.progress import say

LOADED_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.setAttribute('data-figures-loaded', ok + '/' + imgs.length);
  var root = document.documentElement;  // a table wider than the page scrolls in its own box, never the page
  document.body.setAttribute('data-page-overflow', root.scrollWidth > root.clientWidth ? 'yes' : 'no');
});
</script>"""
STYLE = """<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.maps img{width:210px}.note{color:#555;font-size:0.9em}.gap{color:#a00}.wide{overflow-x:auto;max-width:100%}
</style>"""


CENTRAL_NOTE = ("The paper's question: how much worse does a network do on images of people it has seen (image "
                "folds), on people it has not seen (subject folds), and on adults with cerebral palsy (the external "
                "set)? Each image counts once (an external image's probabilities averaged over the repeats); 95 % "
                "intervals resample people, and a gap's resamples each side's people on their own. A network that "
                "leans towards calling pain on CP faces shows a pain recall far above its no-pain recall.")
VIDEOS_NOTE = ("Each CP video gives a frame at the moment of pain and one at rest, of the same person in the same "
               "recording. Among the videos whose two frames the raters labelled differently: how often the network "
               "scores the pain frame higher (0.5 is no better than a coin), and by how much. A shift common to a "
               "person's frames (a face the network finds painful whatever it shows) moves neither.")

CALIBRATION_NOTE = ("Whether a pain probability means what it says, over every test prediction (each repeat's "
                    f"model counts as a model): the Brier score (0 is perfect; always answering 0.5 scores 0.25) and "
                    f"the expected calibration error over {BINS} equal-width bins of the pain probability (the "
                    "image-weighted mean gap between a bin's mean probability and its share of pain images).")
OPERATING_POINT_NOTE = ("A user acts on a threshold, not on an accuracy. Each search's threshold is the highest "
                        "whose pain recall on its own validation split reaches the target (missing pain is the "
                        "costly error here); the test images choose nothing. Sensitivity is the test split's pain "
                        "recall at those thresholds, specificity its no-pain recall, with 95 % intervals over people. "
                        "Below: the calibration fitted on each search's validation split, and its effect on the test "
                        "split (it moves probabilities, not which images pass a threshold). Where a refit scored the "
                        "test split, the validation split (on which the refit trained) is scored by the chosen "
                        "trial's own model, whose probabilities the refit's need not share: `search_thresholds` "
                        "says so per search.")
LABEL_ISSUES_NOTE = ("Frames taken from videos may carry imprecise labels (the paper's warning). Every pool image is "
                     "scored once by a network that never trained on it (the k-fold scenarios' test splits, subject "
                     "folds first, averaged over networks); cleanlab's confident learning flags the frames whose given "
                     "label those scores make least likely. Ids are the shards' pseudonymous image ids: look a frame "
                     "up in the shards (painsearch data inspect) or your own key's mapping before relabelling it. A "
                     "flag is a reason to look again, not a verdict.")


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if np.isnan(v):
            return ""
        return f"{v:.2e}" if v != 0 and abs(v) < 1e-3 else f"{v:.3f}"  # a learning rate of 3e-4 is not 0.000
    return html.escape(str(v))


def _table(df: pd.DataFrame, table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in df.itertuples(index=False))
    return f'<div class="wide"><table id="{table_id}"><tr>{head}</tr>{rows}</table></div>'


def headline(summ: pd.DataFrame) -> pd.DataFrame:
    """Per model x scenario: mean ± std over folds and the pooled value with its bootstrap 95 % interval; `chance`
    is what always answering the commoner class scores, and `above chance` says whether accuracy's interval clears it."""
    out = summ[["model", "scenario", "folds", "test_images"]].copy()
    for n in ("accuracy", "f1_pain", "f1_macro", "roc_auc"):
        out[n] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(summ[f"{n}_mean"], summ[f"{n}_std"])]
        out[f"{n} [95% CI]"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in
                                zip(summ[n], summ[f"{n}_ci_low"], summ[f"{n}_ci_high"])]
    out["chance"] = [f"{c:.3f}" for c in summ["chance_accuracy"]]
    out["above chance"] = ["yes" if a else "no" for a in summ["above_chance"]]
    return out


def above_chance_note(rows: int) -> str:
    """What `above chance` claims: a verdict per row, and the correction a reader of several rows at once needs."""
    return ("'above chance' is judged for each row alone: its accuracy's 95 % interval lies above chance. Read "
            f"together, the {rows} rows make {rows} such claims, and some may clear chance by luck alone; to claim "
            f"them all at once at 95 %, hold each to a Bonferroni level (1 - 0.05/{rows}, an interval of "
            f"{100 * (1 - 0.05 / max(rows, 1)):.2f} %), which only a wider margin over chance than the table's "
            "interval shows can meet.")


def write_tables(res: Results, out: Path, summ: pd.DataFrame, folds: pd.DataFrame, tests: pd.DataFrame,
                 extra: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    per_class = summ[["model", "scenario", *[f"{n}_{k}" for n in PER_CLASS for k in ("mean", "std")], *PER_CLASS]]
    tables = {"results_by_model_and_scenario": summ, "results_by_fold": folds, "per_class": per_class,
              "model_comparisons": tests, "chosen_settings": chosen_settings(res), "searches": res.searches,
              "trials": res.trials, **extra}
    d = out / "tables"
    d.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_csv(d / f"{name}.csv", index=False)
        (d / f"{name}.json").write_text(df.to_json(orient="records", indent=1))
    return tables


# The report counts epochs as Keras's log does, from 1 (the store's records count from 0: `epoch` 0 is the first).
EPOCH_COLUMN = "best epoch (from 1)"


def chosen_settings(res: Results) -> pd.DataFrame:
    """What each search chose on validation data and which model scored its test split, below the paper's own
    settings (docs/networks.md)."""
    from search.space import PAPER

    rows = [{"model": "the paper", "scenario": "", "fold": "", "trial": "", EPOCH_COLUMN: "", **PAPER, "scored": ""}]
    for key, c in res.choices.items():
        scored = f"refit on training + validation, {c['refit_epochs']} epochs" if c["scored"] == "refit" else \
            f"the chosen trial's weights after epoch {int(c['epoch']) + 1}"
        rows.append({**key.as_dict(), "trial": c["trial_id"], EPOCH_COLUMN: int(c["epoch"]) + 1,
                     **{k: c["params"].get(k, "") for k in PAPER}, "scored": scored})
    return pd.DataFrame(rows)


def analyze(uri: str, out: str | Path, endpoint: str | None = None, config: ReportConfig = ReportConfig(),
            log: Callable[[str], None] = say) -> dict[str, Any]:
    """Everything the report holds, written whole into `out` (an earlier report there is replaced only once the new
    one is complete); returns paths and the headline table."""
    target = Path(out)
    with written_whole(target) as work:
        result = _analyze(uri, work, endpoint, config, log)
    log(f"analyze: report at {target / 'index.html'}")
    return {**result, "index": target / "index.html"}


def _analyze(uri: str, out: Path, endpoint: str | None, config: ReportConfig,
             log: Callable[[str], None]) -> dict[str, Any]:
    (out / "figures").mkdir(parents=True, exist_ok=True)
    res = load(uri, endpoint)
    cfg = res.config
    log(f"analyze: {len(res.predictions)} test predictions from {int((res.searches['status'] == 'ok').sum())} "
        f"of {len(res.searches)} searches")
    summ = summary(res.predictions, n_boot=config.bootstrap, seed=cfg.get("seed", 0))
    folds = per_fold(res.predictions)
    tests = compare(res.predictions, n_boot=config.bootstrap, seed=cfg.get("seed", 0))
    extra: dict[str, pd.DataFrame] = {}

    from pipelines.shards.breakdown import breakdown

    try:
        t2 = breakdown(cfg["shards"], cfg.get("s3_endpoint"))
        extra["datasets_table2"] = pd.DataFrame(t2["datasets"])
    except Exception as exc:  # the shards may live where this machine cannot reach
        log(f"analyze: the dataset breakdown is left out ({exc})")
    sequences, paper_data = None, False
    try:
        from pipelines.shards.read import read_manifest, read_meta
        from pipelines.storage import open_store

        meta = read_meta(cfg["shards"], cfg.get("s3_endpoint"))
        sequences = dict(zip(meta["image_id"], meta["sequence"]))
        real = not read_manifest(open_store(cfg["shards"], cfg.get("s3_endpoint"))).get("phantom", True)
        paper_data = real and sorted(cfg["pool"]) == ["delaware", "mintpain", "unbc"] and cfg["external"] == ["cppain"]
    except Exception as exc:  # the shards may live where this machine cannot reach
        log(f"analyze: the paired CP-video analysis is left out ({exc})")
    central = central_result(res.predictions, sequences, paper_data, n_boot=config.bootstrap, seed=cfg.get("seed", 0))
    extra.update(central)
    extra.update(label_issues(res.predictions))
    extra["calibration"] = calibration_table(res.predictions)
    refit = frozenset((k.model, k.scenario, k.fold) for k, c in res.choices.items() if c.get("scored") == "refit")
    extra.update(operating_points(res.predictions, res.validation, config.target_recall, config.calibration,
                                  n_boot=config.bootstrap, seed=cfg.get("seed", 0), refit=refit))
    from pipelines.models.build import model_table

    extra["networks_table3"] = pd.DataFrame(model_table(names=cfg["models"]))
    counts = res.searches.groupby(["model", "scenario"]).agg(
        searches=("fold", "count"), ok=("status", lambda s: int((s == "ok").sum())),
        trials=("trials", "sum"), failed_trials=("failed_trials", "sum")).reset_index()
    extra["trial_counts"] = counts

    figs: dict[str, Path] = {}
    figs["Accuracy and F1 (pain) by network and scenario (the paper's Figure 4)"] = figures.by_network(summ, out / "figures" / "by_network.png")
    p = figures.per_class_external(summ, out / "figures" / "per_class_external.png")
    if p:
        figs["Per-class precision and recall on the external set (Figure 5)"] = p
    p = figures.reliability_diagram(res.predictions, out / "figures" / "calibration.png")
    if p:
        figs[f"Calibration: reliability of the pain probability ({BINS} equal-width bins; the diagonal is perfect)"] = p
    p = figures.search_reliability(res.trials, cfg["search"]["metric"], out / "figures" / "search_reliability.png")
    if p:
        figs["Reliability of the search: best validation score against trials spent"] = p

    heat = None
    if config.lime is not None:
        from analysis.lime_heatmaps import global_heatmaps

        log("analyze: LIME explanations as Ray tasks")
        heat = global_heatmaps(res, out / "figures" / "heatmaps", config.lime, config.phantom_truth, log)
        extra["heatmap_regions"] = heat["regions"]
    raters = None
    if config.ratings:
        from analysis.icc import rater_agreement
        from pipelines.sources.cppain import read_ratings

        raters = rater_agreement(read_ratings(config.ratings))
    tables = write_tables(res, out, summ, folds, tests, extra)
    head = headline(summ)
    _write_html(out / "index.html", res, head, figs, tables, heat, raters)
    _write_md(out / "report.md", res, head, figs, tables, heat, raters)
    return {"headline": head, "summary": summ}


def _protocol(res: Results) -> str:
    c = res.config
    s = c["search"]
    return (f"{res.study['protocol']} Searches: Optuna {('TPE' if s['searcher'] == 'optuna' else 'random')} sampler "
            f"{'with ASHA early stopping' if s['scheduler'] == 'asha' else 'without early stopping'}, "
            f"{s['trials']} trials per (network, scenario, fold), metric {s['metric']}; {c['folds']} folds "
            f"(external: {c['folds']} repeats); validation share {c['val_fraction']}; seed {c['seed']}.")


def _gaps(res: Results) -> list[str]:
    out = []
    for r in res.searches.itertuples():
        if r.status != "ok":
            err = getattr(r, "error", "") if isinstance(getattr(r, "error", ""), str) else ""
            out.append(f"{r.model} {r.scenario} fold {r.fold}: {r.status}" + (f" ({err[:200]})" if err else ""))
    if not res.trials.empty and "status" in res.trials:
        failed = res.trials[res.trials["status"] == "failed"]
        for r in failed.itertuples():
            out.append(f"trial {r.trial_id} of {r.model} {r.scenario} fold {r.fold} failed "
                       f"({r.error_kind}): {str(r.error)[:200]}")
    return out


def _write_html(path: Path, res: Results, head: pd.DataFrame, figs: dict[str, Path], tables: dict[str, pd.DataFrame],
                heat: dict | None, raters: dict | None) -> None:
    c = res.config
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>painsearch report</title>{STYLE}</head><body>",
             "<h1>Pain detection in face images: study report</h1>",
             f"<p class='note'>Written {time.strftime('%Y-%m-%d %H:%M')} by painsearch from {html.escape(res.store.uri)}.</p>",
             "<h2>What was run, on what data</h2>",
             f"<p>{len(c['models'])} network(s) ({html.escape(', '.join(c['models']))}) under "
             f"{len(c['scenarios'])} scenario(s) ({html.escape(', '.join(c['scenarios']))}); training pool "
             f"{html.escape(', '.join(c['pool']))}, external test set {html.escape(', '.join(c['external']))}.</p>"]
    if "datasets_table2" in tables:
        parts.append(_table(tables["datasets_table2"], "datasets"))
    parts += ["<h2>Protocol</h2>", f"<p>{html.escape(_protocol(res))}</p>",
              "<h2>The central result: unseen images, unseen people, CP faces</h2>",
              f"<p>{html.escape(CENTRAL_NOTE)}</p>", _table(tables["scenario_gap"], "scenario-gap")]
    if not tables["scenario_gaps"].empty:  # a study of one scenario has no gap to show
        parts += ["<h3>Gaps between scenarios</h3>", _table(tables["scenario_gaps"], "scenario-gaps")]
    if not tables["cp_videos"].empty:
        parts += ["<h3>CP videos: the pain frame against the rest frame</h3>", f"<p>{html.escape(VIDEOS_NOTE)}</p>",
                  _table(tables["cp_videos"], "cp-videos")]
    parts += ["<h2>Results</h2>",
              "<p>Mean ± standard deviation over folds (external: over repeats), and the estimate over all test "
              "predictions with its 95 % bootstrap interval (subjects resampled). Chance is what always answering "
              "the commoner class scores.</p>",
              f"<p class='note'>{html.escape(above_chance_note(len(head)))}</p>",
              _table(head, "headline"),
              "<h3>What was chosen, and what scored the test split</h3>",
              "<p>Each search's choice, made on its validation split alone, below the paper's own settings.</p>",
              _table(tables["chosen_settings"], "chosen-settings")]
    for title, p in figs.items():
        parts.append(f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' src='{_png(p)}'>")
    parts += ["<h3>Calibration</h3>", f"<p>{html.escape(CALIBRATION_NOTE)}</p>", _table(tables["calibration"], "calibration"),
              "<h3>Operating point</h3>", f"<p>{html.escape(OPERATING_POINT_NOTE)}</p>",
              _table(tables["operating_point"], "operating-point"), _table(tables["calibration_fitted"], "calibration-fitted")]
    if not tables["model_comparisons"].empty:
        parts += ["<h3>Paired comparisons</h3>",
                  "<p>Each test image counts once: its probabilities are averaged over the repeats that scored it. "
                  "Differences in accuracy and macro F1 with a paired bootstrap over subjects, McNemar's exact test on "
                  "the per-image votes beside them; p-values Holm-corrected within each scenario.</p>",
                  _table(tables["model_comparisons"], "comparisons")]
    if not tables["label_issue_counts"].empty:
        parts += ["<h2>Frames that may be mislabelled</h2>", f"<p>{html.escape(LABEL_ISSUES_NOTE)}</p>",
                  _table(tables["label_issue_counts"], "label-issue-counts"),
                  f"<h3>The {TOP} most likely in each dataset</h3>",
                  _table(top_frames(tables["label_issues"]), "label-issues")]
    if heat:
        regions_from = ("the phantom's ground truth" if heat["regions_from"] != "template"
                        else "template boxes: no ground truth was given")
        parts += ["<h2>Where the networks look: global LIME heatmaps</h2>",
                  "<p>Each map averages the LIME explanations of one network's images of one predicted class and "
                  "dataset in one scenario (test images; in the external scenario also the PAIN-DB faces of the same "
                  "model's validation split), warped to a common face with the five detected landmarks scaled to the "
                  "image the network read, drawn over an outline (no real face). The table gives the share of each "
                  "map's mass on the face (unstretched, covered pixels inside the face's outline only) in the regions where "
                  f"pain shows ({regions_from}), against their share of the face (ratio 1 is chance: a map spread "
                  "evenly over the face scores 1), held against the same network re-initialised with several seeds "
                  "(a map that does not depend on what was learned scores alike): the seeds' mean, lowest and "
                  "highest ratio, whether the trained ratio lies outside them, and the mean rank correlation between "
                  "the trained map and each re-initialised one (near 1: the map shows the input's structure, not "
                  f"what was learned). {NO_PAIN_NOTE}</p>",
                  "<div class='maps'>"]
        for title, p in heat["figures"].items():
            parts.append(f"<img alt='{html.escape(title)}' src='{_png(p)}'>")
        parts += ["</div>", _table(heat["regions"], "heatmap-regions")]
    if raters:
        rows = [{"stimulus": "all", "scale": k, **_icc_row(v)} for k, v in raters["scales"].items()]
        rows += [{"stimulus": s, "scale": k, **_icc_row(v)} for s, b in raters["by_stimulus"].items() for k, v in b.items()]
        parts += ["<h2>Agreement of the human raters</h2>", _table(pd.DataFrame(rows), "raters"),
                  f"<p>{raters['consensus_pain_share']:.1%} of {raters['n_images']} images are pain by consensus.</p>"]
    gaps = _gaps(res)
    parts.append("<h2>Failures and gaps</h2>")
    parts.append("<ul>" + "".join(f"<li class='gap'>{html.escape(g)}</li>" for g in gaps) + "</ul>" if gaps else "<p>None: every search finished.</p>")
    parts += ["<h2>Versions and config</h2>", f"<pre>{html.escape(json.dumps(res.study.get('versions', {}), indent=1))}</pre>",
              f"<pre>{html.escape(json.dumps(c, indent=1))}</pre>", LOADED_CHECK, "</body></html>"]
    path.write_text("\n".join(parts))


def _icc_row(v: dict) -> dict:
    return {"ICC(2,1)": v["icc2_1"], "95% CI (2,1)": f"[{v['ci95_2_1'][0]:.2f}, {v['ci95_2_1'][1]:.2f}]",
            "ICC(2,k)": v["icc2_k"], "95% CI (2,k)": f"[{v['ci95_2_k'][0]:.2f}, {v['ci95_2_k'][1]:.2f}]",
            "category": v["category"], "images": v["n_targets"], "raters": v["n_raters"]}


def _md(df: pd.DataFrame) -> str:
    rows = [" | ".join(_fmt(v) for v in r) for r in df.itertuples(index=False)]
    return "\n".join([" | ".join(map(str, df.columns)), " | ".join("---" for _ in df.columns), *rows])


def _write_md(path: Path, res: Results, head: pd.DataFrame, figs: dict[str, Path], tables: dict[str, pd.DataFrame],
              heat: dict | None, raters: dict | None) -> None:
    lines = ["# Study report", "", _protocol(res), "", "## The central result: unseen images, unseen people, CP faces",
             "", CENTRAL_NOTE, "", _md(tables["scenario_gap"]), ""]
    if not tables["scenario_gaps"].empty:
        lines += [_md(tables["scenario_gaps"]), ""]
    if not tables["cp_videos"].empty:
        lines += [VIDEOS_NOTE, "", _md(tables["cp_videos"]), ""]
    lines += ["## Results", "", above_chance_note(len(head)), "", _md(head), ""]
    lines += ["## Operating point", "", OPERATING_POINT_NOTE, "", _md(tables["operating_point"]), "",
              _md(tables["calibration_fitted"]), ""]
    for title, p in figs.items():
        lines += [f"### {title}", "", f"![{title}]({p.relative_to(path.parent)})", ""]
    if not tables["label_issue_counts"].empty:
        lines += ["## Frames that may be mislabelled", "", LABEL_ISSUES_NOTE, "", _md(tables["label_issue_counts"]), "",
                  _md(top_frames(tables["label_issues"])), ""]
    if heat:
        lines += ["## Global LIME heatmaps", "", _md(heat["regions"]), ""]
    gaps = _gaps(res)
    lines += ["## Failures and gaps", ""] + ([f"- {g}" for g in gaps] or ["None: every search finished."])
    path.write_text("\n".join(lines) + "\n")
