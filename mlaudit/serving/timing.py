"""Timing a model's predictions: single-row latency percentiles and batch throughput.

Latency percentiles come with a distribution-free confidence interval from order statistics:
the number of timings at or below the true p-th quantile is binomial(n, p), so two order
statistics chosen from binomial quantiles bracket it with at least the stated confidence,
whatever the distribution of the timings. Why not a bootstrap: resampling can only reuse the
handful of timings above the 99th percentile, so a bootstrap interval of a p99 is lumpy and
too narrow exactly where the gate decides; the order-statistic interval is exact.

Single-row timing is adaptive: after a warm-up, timings are taken in rounds that double the
count until the p99's interval is within a relative tolerance of its estimate or the time
budget is spent; the result says which stopped it.

The garbage collector is off while a loop is timed, as :mod:`timeit` does: a collection in
the audit's worker walks mlaudit's own objects (the data, the report), not those of the
server the model will run in, so the pauses it would add are not the model's.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from mlaudit.core.findings import JsonValue
from mlaudit.core.stats import DEFAULT_CONFIDENCE, Interval

PERCENTILES = (50, 95, 99)
# Warm-up: caches, lazy initialisation and branch predictors settle within a few dozen calls;
# the time cap keeps a slow model from spending its budget here.
WARMUP_CALLS = 50
WARMUP_S = 0.5
# The first round: enough timings that the p99 stands on 20 timings above it.
FIRST_ROUND = 2000
MAX_CALLS = 1 << 18  # 262,144 timings: 2 MB of int64, far past any tolerance worth asking
_BUDGET_CHECK_EVERY = 128  # calls between checks of the rule's own budget
# A model too slow for its minimum repetitions stops at this many times its budget.
_OVERRUN_FACTOR = 3
_NS_PER_MS = 1e6


@dataclass(frozen=True)
class LatencyProfile:
    """Single-row latency percentiles in milliseconds, each with its interval."""

    percentiles: tuple[tuple[int, Interval], ...]
    calls: int
    warmup_calls: int
    seconds: float
    converged: bool  # the p99 interval came within the tolerance before the budget ran out
    tolerance: float

    def at(self, percentile: int) -> Interval:
        return dict(self.percentiles)[percentile]

    @property
    def p99_relative_half_width(self) -> float:
        p99 = self.at(99)
        return (p99.high - p99.low) / 2 / p99.estimate if p99.estimate > 0 else 0.0

    def percentile_metrics(self) -> dict[str, JsonValue]:
        """``p50_ms``... as intervals: the report's headline figures."""
        return {f"p{p}_ms": interval.as_metric() for p, interval in self.percentiles}

    def as_metric(self) -> dict[str, JsonValue]:
        """How the percentiles were measured."""
        return {
            "calls": self.calls,
            "warmup_calls": self.warmup_calls,
            "seconds": round(self.seconds, 3),
            "converged": self.converged,
            "tolerance": self.tolerance,
            "p99_relative_half_width": round(self.p99_relative_half_width, 4),
        }


@dataclass(frozen=True)
class Throughput:
    """Rows per second at one batch size: the batch over the median batch time."""

    batch_size: int
    rows_per_s: Interval
    repetitions: int

    def as_metric(self) -> dict[str, JsonValue]:
        return {
            "batch_size": self.batch_size,
            "rows_per_s": self.rows_per_s.as_metric(),
            "repetitions": self.repetitions,
        }


def quantile_interval(
    sorted_samples: np.ndarray, quantile: float, confidence: float = DEFAULT_CONFIDENCE
) -> Interval:
    """The ``quantile`` of ``sorted_samples`` (ascending) with its order-statistic interval.

    With B ~ binomial(n, q) timings at or below the true quantile, the l-th and u-th order
    statistics bracket it when l <= B < u; l and u are the binomial quantiles of the two
    tails. Where n is too small for a bound, the extreme timing stands in for it.
    """
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("a quantile needs at least one timing")
    tail = (1.0 - confidence) / 2.0
    lower_rank = int(binom.ppf(tail, n, quantile))  # 1-based order statistic
    upper_rank = int(binom.ppf(1.0 - tail, n, quantile)) + 1
    low = float(sorted_samples[min(max(lower_rank, 1), n) - 1])
    high = float(sorted_samples[min(upper_rank, n) - 1])
    estimate = float(np.quantile(sorted_samples, quantile))
    return Interval(estimate, min(low, estimate), max(high, estimate), confidence)


@contextmanager
def _collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def single_row_latency(
    predict_row: Callable[[int], object],
    order: Sequence[int],
    *,
    tolerance: float,
    budget_s: float,
    check_budget: Callable[[], None] = lambda: None,
) -> LatencyProfile:
    """Time ``predict_row(i)`` for the row indices of ``order`` (cycled), adaptively.

    Rounds double the count of timings (2,000, 4,000, 8,000...) until the p99's interval is
    within ``tolerance`` of its estimate (relative half-width) or ``budget_s`` is spent.
    """
    with _collector_paused():
        return _single_row_latency(predict_row, order, tolerance, budget_s, check_budget)


def _single_row_latency(
    predict_row: Callable[[int], object],
    order: Sequence[int],
    tolerance: float,
    budget_s: float,
    check_budget: Callable[[], None],
) -> LatencyProfile:
    started = time.perf_counter()
    warmup = 0
    while warmup < WARMUP_CALLS and time.perf_counter() - started < WARMUP_S:
        predict_row(order[warmup % len(order)])
        warmup += 1
    deadline = time.perf_counter() + budget_s
    timings = np.empty(MAX_CALLS, dtype=np.int64)
    calls, target = 0, FIRST_ROUND
    converged = out_of_time = False
    while True:
        while calls < target:
            row = order[calls % len(order)]
            begin = time.perf_counter_ns()
            predict_row(row)
            timings[calls] = time.perf_counter_ns() - begin
            calls += 1
            if calls % _BUDGET_CHECK_EVERY == 0:
                check_budget()
            if time.perf_counter() > deadline:  # every call: a slow model may take seconds
                out_of_time = True
                break
        ordered = np.sort(timings[:calls]) / _NS_PER_MS
        p99 = quantile_interval(ordered, 0.99)
        converged = p99.estimate > 0 and (p99.high - p99.low) / 2 <= tolerance * p99.estimate
        if converged or out_of_time or calls >= MAX_CALLS:
            break
        target = min(2 * target, MAX_CALLS)
    return LatencyProfile(
        tuple((p, quantile_interval(ordered, p / 100)) for p in PERCENTILES),
        calls,
        warmup,
        time.perf_counter() - started,
        converged,
        tolerance,
    )


def batch_throughput(
    predict_batch: Callable[[], object],
    batch_size: int,
    *,
    budget_s: float,
    min_repetitions: int = 5,
    check_budget: Callable[[], None] = lambda: None,
) -> Throughput:
    """Rows per second of ``predict_batch()`` (one batch of ``batch_size`` rows): one warm-up
    call, then timed calls until ``budget_s`` is spent and at least ``min_repetitions`` were
    made (a model too slow for those stops at three times the budget, after one). The
    interval is the median batch time's, inverted."""
    predict_batch()
    times: list[int] = []
    with _collector_paused():
        started = time.perf_counter()  # after the collection the pause starts with
        while len(times) < MAX_CALLS:
            begin = time.perf_counter_ns()
            predict_batch()
            times.append(time.perf_counter_ns() - begin)
            check_budget()
            elapsed = time.perf_counter() - started
            if elapsed >= budget_s and (
                len(times) >= min_repetitions or elapsed >= _OVERRUN_FACTOR * budget_s
            ):
                break
    # A nanosecond floor: a clock that reads 0 for a call must not make the rate infinite.
    seconds = np.sort(np.maximum(np.asarray(times, dtype=float), 1.0)) / 1e9
    median = quantile_interval(seconds, 0.5)
    rate = Interval(
        batch_size / median.estimate,
        batch_size / median.high,
        batch_size / median.low,
        median.confidence,
    )
    return Throughput(batch_size, rate, len(times))
