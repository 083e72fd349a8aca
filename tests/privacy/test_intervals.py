"""The interval helpers added to mlaudit.core.stats for the privacy rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlaudit.core.stats import bootstrap_interval, clopper_pearson, clopper_pearson_bounds


@st.composite
def proportions(draw: st.DrawFn) -> tuple[int, int]:
    trials = draw(st.integers(min_value=1, max_value=500))
    return draw(st.integers(min_value=0, max_value=trials)), trials


# No deadline: shared CI machines make per-example timings noise; these tests check numbers.
@settings(deadline=None)
@given(st.lists(proportions(), min_size=1, max_size=20), st.sampled_from([0.9, 0.95, 0.99]))
def test_vectorised_clopper_pearson_matches_the_scalar_one(
    cases: list[tuple[int, int]], confidence: float
) -> None:
    successes, trials = (np.array(column) for column in zip(*cases, strict=True))
    low, high = clopper_pearson_bounds(successes, trials, confidence)
    for (k, n), lo, hi in zip(cases, low, high, strict=True):
        exact = clopper_pearson(k, n, confidence)
        assert lo == pytest.approx(exact.low, abs=1e-12)
        assert hi == pytest.approx(exact.high, abs=1e-12)


@settings(deadline=None)
@given(st.lists(st.floats(min_value=-5, max_value=5), min_size=1, max_size=60),
       st.integers(min_value=0, max_value=1000))
def test_bootstrap_interval_contains_the_estimate(values: list[float], seed: int) -> None:
    data = np.array(values)
    interval = bootstrap_interval(
        lambda rows: float(data[rows].mean()), len(data), np.random.default_rng(seed),
        resamples=50,
    )
    assert interval.low <= interval.estimate <= interval.high
    assert interval.estimate == pytest.approx(data.mean())
    assert data.min() - 1e-9 <= interval.low
    assert interval.high <= data.max() + 1e-9


def test_bootstrap_needs_rows() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        bootstrap_interval(lambda rows: 0.0, 0, np.random.default_rng(0))
