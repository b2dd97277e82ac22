"""Pick N frames per subject and class from the labels, before any image is decoded.

The paper took twenty frames per person and class from the video sources so that a few people with
long recordings do not dominate. The choice depends only on the seed and the records themselves.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from pipelines.sources.base import SourceRecord


def _group_seed(seed: int, *parts: object) -> int:
    digest = hashlib.sha256("\x00".join([str(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sample_frames(records: list[SourceRecord], per_subject_class: int | None, seed: int) -> list[SourceRecord]:
    """Up to `per_subject_class` records for each (dataset, subject, label); all when it is None or 0."""
    if not per_subject_class:
        return sorted(records, key=_order)
    groups: dict[tuple[str, str, int], list[SourceRecord]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.subject, r.label)].append(r)
    chosen: list[SourceRecord] = []
    for key in sorted(groups):
        group = sorted(groups[key], key=_order)
        if len(group) > per_subject_class:
            rng = np.random.default_rng(_group_seed(seed, *key))
            idx = np.sort(rng.choice(len(group), size=per_subject_class, replace=False))
            group = [group[i] for i in idx]
        chosen.extend(group)
    return sorted(chosen, key=_order)


def _order(r: SourceRecord) -> tuple:
    return (r.dataset, r.subject, r.sequence, r.frame, r.rel)
