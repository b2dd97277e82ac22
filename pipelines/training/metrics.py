"""Classification metrics from labels and predicted probabilities, one definition for training and analysis."""

from __future__ import annotations

import numpy as np

from pipelines.labels import CLASS_NAMES


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Loss, accuracy, and precision / recall / F1 for each class and their macro mean.

    Keys: `loss`, `accuracy`, `precision_<class>`, `recall_<class>`, `f1_<class>` (class = `no_pain`, `pain`,
    or `c<i>` beyond two classes) and `precision_macro`, `recall_macro`, `f1_macro`. An undefined ratio
    (nothing predicted or present) counts as 0, as scikit-learn's `zero_division=0` does.
    """
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1]
    pred = probs.argmax(axis=1)
    eps = 1e-7
    out: dict[str, float] = {
        "loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], eps, 1.0)))) if len(y_true) else float("nan"),
        "accuracy": float(np.mean(pred == y_true)) if len(y_true) else float("nan"),
    }
    for c in range(n_classes):
        name = CLASS_NAMES[c].replace(" ", "_") if n_classes == 2 else f"c{c}"
        tp = float(np.sum((pred == c) & (y_true == c)))
        fp = float(np.sum((pred == c) & (y_true != c)))
        fn = float(np.sum((pred != c) & (y_true == c)))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[f"precision_{name}"] = p
        out[f"recall_{name}"] = r
        out[f"f1_{name}"] = 2 * p * r / (p + r) if p + r else 0.0
    for m in ("precision", "recall", "f1"):
        out[f"{m}_macro"] = float(np.mean([v for k, v in out.items() if k.startswith(f"{m}_") and not k.endswith("macro")]))
    return out
