import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.sources.base import SourceRecord
from pipelines.sources.sampling import sample_frames


def records(n_subjects=3, frames=30):
    out = []
    for s in range(n_subjects):
        for f in range(frames):
            label = int(f % 3 == 0)
            out.append(SourceRecord("unbc", f"/x/{s}/{f}.png", f"{s}/{f}.png", f"S{s}", "seq", f, float(label), label))
    return out


def test_n_per_subject_and_class():
    chosen = sample_frames(records(), 5, seed=1)
    counts = Counter((r.subject, r.label) for r in chosen)
    assert set(counts.values()) == {5}
    assert len(counts) == 6


def test_keeps_everything_when_fewer_frames_than_n():
    chosen = sample_frames(records(frames=6), 20, seed=1)
    assert len(chosen) == 6 * 3


def test_zero_keeps_all():
    assert len(sample_frames(records(), 0, seed=1)) == 90


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 10))
def test_deterministic_and_independent_of_input_order(seed, n):
    recs = records()
    shuffled = recs[:]
    random.Random(seed).shuffle(shuffled)
    assert sample_frames(recs, n, seed) == sample_frames(shuffled, n, seed)


def test_seed_changes_the_choice():
    a = sample_frames(records(), 5, seed=1)
    b = sample_frames(records(), 5, seed=2)
    assert a != b
