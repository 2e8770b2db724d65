"""Mean and 95 % confidence interval over seeds (Student's t), with no dependency beyond `math`.

Example:

```python
>>> from icpt.metrics import mean_and_interval
>>> mean, low, high = mean_and_interval([0.70, 0.72, 0.74])
>>> round(mean, 3), round(low, 3), round(high, 3)
(0.72, 0.67, 0.77)
>>> mean_and_interval([0.7])  # one seed: no interval
(0.7, None, None)
```
"""

import math


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return result


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The continued fraction converges fast only on this side of the mean; use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, degrees_of_freedom: float) -> float:
    """P(T <= t) for Student's t distribution."""
    tail = 0.5 * regularized_incomplete_beta(
        degrees_of_freedom / 2.0, 0.5, degrees_of_freedom / (degrees_of_freedom + t * t)
    )
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(probability: float, degrees_of_freedom: float) -> float:
    """The t such that P(T <= t) = probability, by bisection on the CDF (probability in (0.5, 1))."""
    if not 0.5 < probability < 1.0:
        raise ValueError(f"probability must lie in (0.5, 1), got {probability}.")
    low, high = 0.0, 1.0
    while student_t_cdf(high, degrees_of_freedom) < probability:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if student_t_cdf(middle, degrees_of_freedom) < probability:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def mean_and_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean of per-seed results and the two-sided Student's t confidence interval of that mean.

    `(mean, mean - t * s / sqrt(n), mean + t * s / sqrt(n))` with `s` the sample standard deviation
    (n - 1 in the denominator) and `t` the (1 + confidence) / 2 quantile of Student's t with n - 1
    degrees of freedom. With one value there is no spread to estimate: the bounds are None.

    Example:

    ```python
    >>> [round(x, 3) for x in mean_and_interval([1.0, 2.0, 3.0])]  # t(0.975, 2) = 4.303, s = 1
    [2.0, -0.484, 4.484]
    ```
    """
    values = [float(value) for value in values]
    if not values:
        raise ValueError("mean_and_interval needs at least one value (one result per seed), got none.")
    if any(math.isnan(value) for value in values):
        raise ValueError(f"mean_and_interval got NaN among {values}: drop or fix the seeds whose metric is undefined.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
    count = len(values)
    mean = sum(values) / count
    if count == 1:
        return mean, None, None
    standard_deviation = math.sqrt(sum((value - mean) ** 2 for value in values) / (count - 1))
    half_width = student_t_quantile((1.0 + confidence) / 2.0, count - 1) * standard_deviation / math.sqrt(count)
    return mean, mean - half_width, mean + half_width
