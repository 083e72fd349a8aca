"""Confidence intervals shared by the behavioural rules.

A gate decides on these bounds, so they are exact where an exact interval exists
(Clopper-Pearson for a binomial proportion), never a normal approximation that misbehaves at
rates near 0 or 1, where robust accuracy and low-FPR attack rates live.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import beta, norm

from mlaudit.core.findings import JsonValue

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float = DEFAULT_CONFIDENCE

    def as_metric(self) -> dict[str, JsonValue]:
        return {
            "estimate": round(self.estimate, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
            "confidence": self.confidence,
        }


def clopper_pearson(
    successes: int, trials: int, confidence: float = DEFAULT_CONFIDENCE
) -> Interval:
    """The exact two-sided interval for a binomial proportion (Clopper and Pearson, 1934)."""
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} outside 0..{trials}")
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = (
        1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    )
    return Interval(successes / trials, low, high, confidence)


def wilson(successes: int, trials: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """The Wilson score interval for a binomial proportion (Wilson, 1927).

    For shares counted over whole data files (a column's missing or out-of-range rows): as
    well behaved near 0 and 1 as Clopper-Pearson but closed-form, so thousands of columns
    cost nothing, and less conservative on the large counts data files bring.
    """
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} outside 0..{trials}")
    z = float(norm.ppf(0.5 + confidence / 2.0))
    share = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    spread = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    spread /= denominator
    # Rounding leaves 1e-18 where the bound is exactly 0 (or 1): say it exactly.
    low = 0.0 if successes == 0 else max(0.0, centre - spread)
    high = 1.0 if successes == trials else min(1.0, centre + spread)
    return Interval(share, low, high, confidence)


def clopper_pearson_bounds(
    successes: npt.ArrayLike, trials: npt.ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`clopper_pearson`'s two bounds for many proportions at once (element-wise).

    Searching thresholds for the best certified bound evaluates thousands of intervals; one
    vectorised ``beta.ppf`` call does in microseconds what a loop does in seconds.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    tail = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        # beta.ppf is NaN where a shape parameter is 0: exactly the cases fixed by np.where.
        low = np.where(k <= 0, 0.0, beta.ppf(tail, k, n - k + 1))
        high = np.where(k >= n, 1.0, beta.ppf(1 - tail, k + 1, n - k))
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def percentile_interval(
    estimate: float, draws: np.ndarray, confidence: float = DEFAULT_CONFIDENCE
) -> Interval:
    """The percentile bootstrap interval of ``draws``, widened to contain ``estimate``.

    A percentile interval can exclude its own point estimate when the statistic is skewed
    (rates near 0 or 1); a report showing ``low > estimate`` would be read as a bug.
    """
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return Interval(estimate, min(float(low), estimate), max(float(high), estimate), confidence)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    size: int,
    rng: np.random.Generator,
    *,
    resamples: int = 1000,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(rows)`` over ``size`` rows.

    ``statistic`` takes an array of row indices (all rows for the estimate, a resample drawn
    with replacement for each draw), so paired statistics such as a difference of two
    classifiers' accuracies on the same rows resample both together.
    """
    if size <= 0:
        raise ValueError("a bootstrap needs at least one row")
    estimate = float(statistic(np.arange(size)))
    draws = np.array(
        [statistic(rng.integers(0, size, size)) for _ in range(resamples)], dtype=float
    )
    return percentile_interval(estimate, draws, confidence)


def derived_rng(seed: int, label: str) -> np.random.Generator:
    """A generator for one purpose (a rule id, a shared evaluation) from the run seed.

    Different labels give independent streams; the same seed and label, the same stream.
    """
    salt = int.from_bytes(hashlib.sha256(label.encode()).digest()[:4], "big")
    return np.random.default_rng([seed, salt])
