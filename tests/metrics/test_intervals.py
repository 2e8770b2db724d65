"""Means and t intervals over seeds (icpt/metrics/intervals.py)."""

import math

import pytest

from icpt.metrics import mean_and_interval
from icpt.metrics.intervals import student_t_quantile


# --------------------------------------------------------------------------------- mean_and_interval


@pytest.mark.parametrize(
    "degrees_of_freedom, quantile",
    # two-sided 95 % critical values of Student's t, from any statistics table
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452), (1000, 1.9623)],
)
def test_student_t_quantile_matches_the_table(degrees_of_freedom, quantile):
    assert student_t_quantile(0.975, degrees_of_freedom) == pytest.approx(quantile, abs=1e-4)


def test_mean_and_interval_over_three_seeds():
    mean, low, high = mean_and_interval([1.0, 2.0, 3.0])
    half_width = 4.302653 * 1.0 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert mean == 2.0
    assert low == pytest.approx(2.0 - half_width, abs=1e-5)
    assert high == pytest.approx(2.0 + half_width, abs=1e-5)


def test_mean_and_interval_one_seed_has_no_bounds():
    assert mean_and_interval([0.7]) == (0.7, None, None)


def test_mean_and_interval_of_equal_values_has_zero_width():
    assert mean_and_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)


def test_mean_and_interval_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="at least one value"):
        mean_and_interval([])
    with pytest.raises(ValueError, match="NaN"):
        mean_and_interval([0.5, float("nan")])
