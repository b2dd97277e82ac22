import pytest

from pipelines.labels import NO_PAIN, PAIN, binary_label, consensus_label, facs_score, pspi


@pytest.mark.parametrize("aus, expected_pspi, expected_facs", [
    ({}, 0, 0),
    ({"AU4": 2, "AU6": 1, "AU7": 3, "AU9": 4, "AU10": 2, "AU43": 1}, 2 + 3 + 4 + 1, 2 + 3 + 4 + 1),
    ({"AU43": 4}, 1, 4),  # PSPI counts eye closure as 0/1, the 20-point score keeps 0-5
    ({"AU4": 5, "AU6": 5, "AU9": 5, "AU43": 5}, 16, 20),
    ({"AU12": 5, "AU25": 3}, 0, 0),  # smiles and open mouths are not pain
])
def test_scores(aus, expected_pspi, expected_facs):
    assert pspi(aus) == expected_pspi
    assert facs_score(aus) == expected_facs


def test_negative_intensity_is_refused():
    with pytest.raises(ValueError, match="negative"):
        pspi({"AU4": -1})


@pytest.mark.parametrize("level, label", [(0, NO_PAIN), (0.0, NO_PAIN), (0.5, PAIN), (4, PAIN), (16, PAIN)])
def test_binary(level, label):
    assert binary_label(level) == label


@pytest.mark.parametrize("scores, label", [([0, 0], NO_PAIN), ([0, 1], PAIN), ([3, 0, 0], PAIN), ([0], NO_PAIN)])
def test_consensus_no_pain_only_when_every_rater_scores_zero(scores, label):
    assert consensus_label(scores) == label


def test_consensus_needs_a_rater():
    with pytest.raises(ValueError):
        consensus_label([])
