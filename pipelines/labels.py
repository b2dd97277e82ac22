"""FACS-derived pain scores and the paper's binary relabelling.

PSPI (Prkachin and Solomon) is what UNBC-McMaster ships per frame; the CP-PAIN raters scored a
20-point FACS sum because their AU43 is 0-5, not binary. Both reduce to "pain" when above 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

PAIN_AUS: tuple[str, ...] = ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")
NO_PAIN, PAIN = 0, 1
CLASS_NAMES: tuple[str, str] = ("no pain", "pain")


def _au(aus: Mapping[str, float], name: str) -> float:
    value = float(aus.get(name, 0.0))
    if value < 0:
        raise ValueError(f"{name} intensity {value} is negative; FACS intensities are 0 or more")
    return value


def pspi(aus: Mapping[str, float]) -> float:
    """PSPI = AU4 + max(AU6, AU7) + max(AU9, AU10) + AU43, with AU43 counted as 0 or 1 (0..16)."""
    return (
        _au(aus, "AU4")
        + max(_au(aus, "AU6"), _au(aus, "AU7"))
        + max(_au(aus, "AU9"), _au(aus, "AU10"))
        + (1.0 if _au(aus, "AU43") > 0 else 0.0)
    )


def facs_score(aus: Mapping[str, float]) -> float:
    """The paper's 20-point FACS score: like PSPI, but AU43 keeps its 0-5 intensity."""
    return (
        _au(aus, "AU4")
        + max(_au(aus, "AU6"), _au(aus, "AU7"))
        + max(_au(aus, "AU9"), _au(aus, "AU10"))
        + _au(aus, "AU43")
    )


def binary_label(level: float) -> int:
    """Any pain level above 0 is pain: how the paper merged sources with different scales."""
    return PAIN if float(level) > 0 else NO_PAIN


def consensus_label(scores: Iterable[float]) -> int:
    """No pain only when every rater scored 0; any other score from any rater is pain."""
    values = [float(s) for s in scores]
    if not values:
        raise ValueError("consensus needs at least one rater's score")
    return PAIN if any(v > 0 for v in values) else NO_PAIN
