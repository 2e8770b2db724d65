"""Statistics of the evaluation harness: bootstrap intervals over episodes and paired tests between methods.

Every method answers the same questions (one question per episode), so each method's result is a vector
of per-question scores aligned with every other method's. From those vectors:

- `estimate`: a metric and its 95 % interval from a bootstrap over episodes (`scipy.stats.bootstrap`,
  percentile method, so the interval of an accuracy stays inside [0, 1]). The weighted recognition
  accuracy (0.5 * positives + 0.5 * negatives) resamples positives and negatives separately (a stratified
  bootstrap: their counts are fixed by the design, and a resample never lacks either kind).
- `paired_difference`: the difference of a metric between two methods on the same questions, its
  bootstrap interval (resampling questions, both methods' answers together), and the p-value of a
  two-sided paired permutation test (`scipy.stats.permutation_test`, each question's two outcomes
  swapped at random; for a plain accuracy this is McNemar's exact test, by Monte Carlo).

Example:

```python
>>> import numpy as np
>>> from icpt.metrics.statistics import estimate, paired_difference
>>> a = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1, 1] * 30, dtype=float)
>>> b = np.array([1, 0, 1, 0, 0, 1, 0, 1, 0, 1] * 30, dtype=float)
>>> cell = estimate(a)
>>> round(cell["mean"], 2), 0.0 <= cell["low"] < cell["mean"] < cell["high"] <= 1.0, cell["n"]
(0.8, True, 300)
>>> difference = paired_difference(b, a)
>>> round(difference["difference"], 2), difference["high"] < 0, difference["p_value"] < 0.001
(-0.3, True, True)
```
"""

from __future__ import annotations

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 9999
# Fewest scored questions (per stratum for the weighted accuracy) for an interval; below it only the mean.
MIN_FOR_INTERVAL = 2


def _mean(values, axis=-1):
    return np.mean(values, axis=axis)


def _weighted(positives, negatives, axis=-1):
    return 0.5 * np.mean(positives, axis=axis) + 0.5 * np.mean(negatives, axis=axis)


def _split(scores: np.ndarray, positive: np.ndarray | None):
    """`scores` as one sample, or as (positives, negatives) for the weighted accuracy."""
    if positive is None:
        return (scores,)
    return scores[positive], scores[~positive]


def _bootstrap(samples: tuple, statistic, seed: int) -> tuple[float | None, float | None]:
    if min(len(sample) for sample in samples) < MIN_FOR_INTERVAL:
        return None, None
    if all(np.all(sample == sample[0]) for sample in samples):  # no spread: every resample gives the mean
        value = float(statistic(*samples))
        return value, value
    result = stats.bootstrap(samples, statistic, n_resamples=N_RESAMPLES, vectorized=True, axis=-1,
                             confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def estimate(scores, positive=None, seed: int = 0) -> dict:
    """A metric over questions and its 95 % bootstrap interval over episodes.

    Args:
        scores: per-question scores in [0, 1] (1 right, 0 wrong; a caption's recall in between).
        positive: for the weighted recognition accuracy, whether each question's concept is in the photo;
            the metric is then 0.5 * mean(scores of positives) + 0.5 * mean(scores of negatives).
        seed: the bootstrap's random generator.

    Returns:
        `{"mean", "low", "high", "n"}` (and `n_positive`, `n_negative` with `positive`); `mean` is None when
        the metric is undefined (no question, or no positive or no negative), `low`/`high` are None with
        fewer than `MIN_FOR_INTERVAL` questions (per kind).

    Example:

    ```python
    >>> estimate([1, 0, 1, 1], positive=[True, True, False, False])["mean"]
    0.75
    >>> estimate([])["mean"] is None
    True
    ```
    """
    scores = np.asarray(scores, dtype=float)
    result = {"mean": None, "low": None, "high": None, "n": int(len(scores))}
    if positive is not None:
        positive = np.asarray(positive, dtype=bool)
        result.update(n_positive=int(positive.sum()), n_negative=int((~positive).sum()))
    samples = _split(scores, positive)
    if min(len(sample) for sample in samples) == 0:
        return result
    statistic = _mean if positive is None else _weighted
    result["mean"] = float(statistic(*samples))
    result["low"], result["high"] = _bootstrap(samples, statistic, seed)
    return result


def paired_difference(scores, reference_scores, positive=None, seed: int = 0) -> dict:
    """The metric of `scores` minus that of `reference_scores` on the same questions, with interval and p-value.

    Args:
        scores, reference_scores: per-question scores of two methods, aligned (the same questions in
            the same order).
        positive: as in `estimate`, for the weighted recognition accuracy.
        seed: the random generator of the bootstrap and of the permutation test.

    Returns:
        `{"difference", "low", "high", "p_value", "n", "discordant"}`: the difference, its 95 % bootstrap
        interval (each resample draws questions and keeps both methods' outcomes on them), the two-sided
        p-value of a paired permutation test (each question's two outcomes swapped at random), and the
        number of questions whose two scores differ. All None when the metric is undefined.

    Example:

    ```python
    >>> same = paired_difference([1, 0, 1, 1], [1, 0, 1, 1])
    >>> same["difference"], same["p_value"], same["discordant"]
    (0.0, 1.0, 0)
    ```
    """
    scores = np.asarray(scores, dtype=float)
    reference_scores = np.asarray(reference_scores, dtype=float)
    if scores.shape != reference_scores.shape:
        raise ValueError(
            f"Paired scores must be aligned on the same questions: got {scores.shape} and {reference_scores.shape}."
        )
    result = {"difference": None, "low": None, "high": None, "p_value": None, "n": int(len(scores)),
              "discordant": int(np.sum(scores != reference_scores))}
    mask = None if positive is None else np.asarray(positive, dtype=bool)
    differences = _split(scores - reference_scores, mask)
    if min(len(sample) for sample in differences) == 0:
        return result
    statistic = _mean if mask is None else _weighted
    result["difference"] = float(statistic(*differences))
    result["low"], result["high"] = _bootstrap(differences, statistic, seed)
    if result["discordant"] == 0:
        result["p_value"] = 1.0
        return result
    if min(len(sample) for sample in differences) < MIN_FOR_INTERVAL:  # too few questions for a test
        return result

    # one sample of paired differences under permutation_type="samples": each sign is flipped at random
    # (the two outcomes of a question swapped); positions stay put, so each question keeps its weight
    weights = _question_weights(mask, len(scores))

    def flipped_difference(values, axis=-1):
        return np.sum(values * weights, axis=axis)

    test = stats.permutation_test((scores - reference_scores,), flipped_difference, permutation_type="samples",
                                  vectorized=True, n_resamples=N_RESAMPLES, axis=-1, alternative="two-sided",
                                  rng=np.random.default_rng(seed))
    result["p_value"] = float(min(1.0, test.pvalue))
    return result


def _question_weights(positive: np.ndarray | None, count: int) -> np.ndarray:
    """Per-question weights whose weighted sum is the metric: 1/n each, or 0.5/n_pos and 0.5/n_neg."""
    if positive is None:
        return np.full(count, 1.0 / count)
    return np.where(positive, 0.5 / positive.sum(), 0.5 / (~positive).sum())


def verdict(difference: dict, alpha: float = 0.05) -> str:
    """"better", "worse" or "no detectable difference" for a paired difference (method minus reference).

    A difference counts when its permutation-test p-value is below `alpha` (the bootstrap interval then
    almost always excludes 0 as well).
    """
    if difference.get("difference") is None or difference.get("p_value") is None:
        return "undefined"
    if difference["p_value"] >= alpha:
        return "no detectable difference"
    return "better" if difference["difference"] > 0 else "worse"
