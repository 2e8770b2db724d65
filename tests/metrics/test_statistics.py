"""Bootstrap intervals over episodes and paired tests between methods (icpt.metrics.statistics)."""

import numpy as np
import pytest
from scipy.stats import binomtest

from icpt.metrics.statistics import estimate, paired_difference, verdict


def test_intervals_stay_inside_zero_one_even_near_the_edges():
    for share in (0.0, 0.02, 0.5, 0.98, 1.0):
        scores = (np.arange(300) < share * 300).astype(float)
        cell = estimate(scores)
        assert cell["mean"] == pytest.approx(share) and cell["n"] == 300
        assert 0.0 <= cell["low"] <= cell["mean"] <= cell["high"] <= 1.0


def test_weighted_recognition_is_half_positives_half_negatives_resampled_apart():
    scores = np.array([1.0] * 90 + [0.0] * 10 + [1.0] * 30 + [0.0] * 170)  # 100 positives, 200 negatives
    positive = np.array([True] * 100 + [False] * 200)
    cell = estimate(scores, positive=positive)
    assert cell["mean"] == pytest.approx(0.5 * 0.9 + 0.5 * 0.15)
    assert (cell["n_positive"], cell["n_negative"]) == (100, 200)
    assert 0.0 <= cell["low"] < cell["mean"] < cell["high"] <= 1.0
    assert estimate([1.0, 0.0], positive=[True, True])["mean"] is None  # no negative: undefined, not NaN
    assert estimate([1.0, 0.0, 1.0], positive=[True, False, False])["low"] is None  # one positive: no interval


def test_paired_difference_agrees_with_mcnemar_and_reads_as_a_verdict():
    rng = np.random.default_rng(0)
    reference = (rng.random(1000) < 0.7).astype(float)
    flipped = rng.random(1000) < 0.15
    scores = np.where(flipped, 1.0 - reference, reference)  # differs from the reference on 15 % of questions
    result = paired_difference(scores, reference, seed=1)
    assert result["difference"] == pytest.approx(scores.mean() - reference.mean())
    assert result["discordant"] == int(flipped.sum()) and result["low"] <= result["difference"] <= result["high"]
    better, worse = int(((scores == 1) & (reference == 0)).sum()), int(((scores == 0) & (reference == 1)).sum())
    assert result["p_value"] == pytest.approx(binomtest(better, better + worse).pvalue, abs=0.02)
    assert verdict(result) == ("worse" if result["p_value"] < 0.05 else "no detectable difference")

    clearly_worse = paired_difference(np.zeros(200), np.ones(200))
    assert clearly_worse["difference"] == -1.0 and clearly_worse["p_value"] < 0.001
    assert verdict(clearly_worse) == "worse" and verdict(paired_difference(np.ones(200), np.zeros(200))) == "better"
    same = paired_difference(np.ones(50), np.ones(50))
    assert (same["difference"], same["p_value"], verdict(same)) == (0.0, 1.0, "no detectable difference")
    with pytest.raises(ValueError, match="aligned"):
        paired_difference([1.0, 0.0], [1.0])
