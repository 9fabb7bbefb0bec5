"""Student's t quantile, exactly, for the intervals over seeds and the gate's bounds.

A mean over three seeds, or a paired change over a few hundred queries, is
reported with a bound from Student's t. With few degrees of freedom the
normal quantile is far off (4.30 against 1.96 for a 95% interval over three
seeds), so the quantile is computed from the t distribution itself: for an
integer number of degrees of freedom its CDF is a finite sum (Abramowitz and
Stegun 26.7.3-4), which bisection inverts to full float precision. Beyond
300 degrees of freedom the sum grows long and the Cornish-Fisher expansion
around the normal quantile is within 1e-8 of it, so that is used. No SciPy
needed.

Example:

    t_quantile(0.975, 2)    # 4.3027, the 95% interval's half-width factor over 3 seeds
    t_quantile(0.95, 499)   # 1.6479, a one-sided 95% bound over 500 queries
"""

from __future__ import annotations

import math
from statistics import NormalDist

EXACT_UP_TO = 300
"""Degrees of freedom up to which the quantile inverts the exact CDF."""


def t_cdf(t: float, degrees_of_freedom: int) -> float:
    """P(T <= t) for Student's t with an integer number of degrees of freedom."""
    v = degrees_of_freedom
    if v < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {v}")
    theta = math.atan(abs(t) / math.sqrt(v))
    sine, cosine = math.sin(theta), math.cos(theta)
    if v % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2.4/3.5 cos^4 + ...))
        term, total = 1.0, 1.0 if v > 1 else 0.0
        for k in range(3, v - 1, 2):
            term *= (k - 1) / k * cosine ** 2
            total += term
        inside = 2 / math.pi * (theta + sine * cosine * total)
    else:      # even: sin (1 + 1/2 cos^2 + 1.3/2.4 cos^4 + ...)
        term, total = 1.0, 1.0
        for k in range(2, v - 1, 2):
            term *= (k - 1) / k * cosine ** 2
            total += term
        inside = sine * total
    return 0.5 + math.copysign(inside, t) / 2


def t_quantile(probability: float, degrees_of_freedom: int) -> float:
    """The ``probability`` quantile of Student's t: the t with P(T <= t) = probability."""
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {degrees_of_freedom}")
    if probability < 0.5:
        return -t_quantile(1 - probability, degrees_of_freedom)
    if degrees_of_freedom > EXACT_UP_TO:
        return _cornish_fisher(probability, degrees_of_freedom)
    low, high = 0.0, 1.0
    while t_cdf(high, degrees_of_freedom) < probability:
        low, high = high, 2 * high
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if t_cdf(middle, degrees_of_freedom) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _cornish_fisher(probability: float, degrees_of_freedom: int) -> float:
    """The t quantile expanded around the normal one, to the 1/v^3 term."""
    z, v = NormalDist().inv_cdf(probability), degrees_of_freedom
    return (z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * v ** 3))
