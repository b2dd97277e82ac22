"""The figures, in the paper's form where it has one (matplotlib, PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SCENARIO_NAMES = {"image_kfold": "image k-fold", "subject_kfold": "subject k-fold", "external": "external (CP-PAIN)"}


def _save(fig, path: Path) -> Path:
    fit_titles(fig)
    if not fig.get_constrained_layout():  # constrained layout (a legend beside the axes) lays itself out
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fit_titles(fig) -> None:
    """Wrap each axes' title onto as many lines as its axes' width needs: a figure sized for two networks is
    narrower than the longer titles, which would be cut off at both ends."""
    import textwrap

    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        title = ax.title
        text = title.get_text().replace("\n", " ")
        width = ax.get_window_extent(renderer).width
        if not text or title.get_window_extent(renderer).width <= width:
            continue
        chars = max(10, int(len(text) * width / title.get_window_extent(renderer).width * 0.95))
        title.set_text(textwrap.fill(text, chars))


def outside(fig) -> list[str]:
    """The texts of a drawn figure that reach beyond its edges (what a reader would see cut off)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()
            and not (box.x0 - 1 <= t.get_window_extent(renderer).x0 and t.get_window_extent(renderer).x1 <= box.x1 + 1)]


def by_network(summary: pd.DataFrame, path: Path) -> Path:
    """Figure 4: accuracy and F1 (pain) by network, grouped by scenario, mean and std over folds."""
    scenarios = [s for s in SCENARIO_NAMES if s in set(summary["scenario"])]
    models = sorted(summary["model"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(max(7, 1.6 * len(models) * 2), 3.8), sharey=True)
    width = 0.8 / max(1, len(scenarios))
    for ax, metric, title in zip(axes, ("accuracy", "f1_pain"), ("accuracy", "F1 (pain)")):
        for i, s in enumerate(scenarios):
            rows = summary[summary["scenario"] == s].set_index("model").reindex(models)
            x = np.arange(len(models)) + (i - (len(scenarios) - 1) / 2) * width
            ax.bar(x, rows[f"{metric}_mean"], width, yerr=rows[f"{metric}_std"], capsize=3, label=SCENARIO_NAMES[s])
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
        ax.set_title(f"{title}, mean ± std over folds")
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def per_class_external(summary: pd.DataFrame, path: Path) -> Path | None:
    """Figure 5: per-class precision and recall on the external set, averaged over the repeats as the paper
    does (bars, with their standard deviation), the pooled values beside them (dots)."""
    ext = summary[summary["scenario"] == "external"].sort_values("model")
    if ext.empty:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(ext)) + 1.5, 3.6), layout="constrained")
    x = np.arange(len(ext))
    bars = [("precision_no_pain", "precision, no pain"), ("recall_no_pain", "recall, no pain"),
            ("precision_pain", "precision, pain"), ("recall_pain", "recall, pain")]
    for i, (col, label) in enumerate(bars):
        at = x + (i - 1.5) * 0.2
        ax.bar(at, ext[f"{col}_mean"], 0.2, yerr=ext[f"{col}_std"], capsize=2, label=label)
        ax.plot(at, ext[col], "k.", ms=5, label="pooled" if i == 0 else None)
    ax.set_xticks(x, ext["model"], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title("per-class precision and recall on the external set (mean ± std over repeats; dots: pooled)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    return _save(fig, path)


def search_reliability(trials: pd.DataFrame, metric: str, path: Path) -> Path | None:
    """Best validation score against trials spent, one line per search."""
    col = f"best_{metric}"
    if trials.empty or col not in trials:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for (m, s, f), g in trials.sort_values("order").groupby(["model", "scenario", "fold"]):
        best = g[col].cummax() if not metric.endswith("loss") else g[col].cummin()
        ax.plot(np.arange(1, len(g) + 1), best, marker="o", ms=3, lw=1, alpha=0.7, label=f"{m} {s} {f}")
    ax.set_xlabel("trials spent")
    ax.set_ylabel(f"best {metric}")
    ax.set_title("reliability of the search: best validation score so far")
    if trials.groupby(["model", "scenario", "fold"]).ngroups <= 12:
        ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def reliability_diagram(preds: pd.DataFrame, path: Path) -> Path | None:
    """Mean pain probability against the share of pain images, per bin, one panel per scenario and a line per
    network; the diagonal is perfect calibration, and a point's size shows how many images its bin holds."""
    from analysis.calibration import BINS, reliability
    from analysis.scores import probs_of

    scenarios = [s for s in SCENARIO_NAMES if s in set(preds["scenario"])]
    if not scenarios:
        return None
    fig, axes = plt.subplots(1, len(scenarios), figsize=(3.6 * len(scenarios), 3.8), squeeze=False)
    for ax, s in zip(axes[0], scenarios):
        ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
        for model, df in preds[preds["scenario"] == s].groupby("model", sort=True):
            r = reliability(df["label"].to_numpy(), probs_of(df)[:, 1], BINS)
            ax.plot(r["mean_probability"], r["pain_share"], marker="o", lw=1, label=model)
            ax.scatter(r["mean_probability"], r["pain_share"], s=8 + 60 * r["images"] / max(1, r["images"].max()),
                       alpha=0.3)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean pain probability", title=SCENARIO_NAMES[s])
    axes[0][0].set_ylabel("share of pain images")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    return _save(fig, path)
