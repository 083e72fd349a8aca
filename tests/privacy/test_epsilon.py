"""The empirical epsilon bound: exact on known mechanisms, never above the truth, honest split."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlaudit.privacy.attacks import AttackScores
from mlaudit.privacy.epsilon import certified_epsilon_at, certify, epsilon_from_rates

rates = st.floats(min_value=0.0, max_value=1.0)
epsilons = st.floats(min_value=0.01, max_value=6.0)


def _randomised_response(epsilon: float) -> tuple[float, float]:
    """TPR and FPR of the optimal test against epsilon-DP randomised response."""
    return math.exp(epsilon) / (1 + math.exp(epsilon)), 1 / (1 + math.exp(epsilon))


# No deadline: shared CI machines make per-example timings noise; these tests check numbers.
@settings(deadline=None)
@given(rates, rates, st.sampled_from([0.0, 1e-5, 0.01]))
def test_bound_is_non_negative_and_zero_without_advantage(
    tpr: float, fpr: float, delta: float
) -> None:
    [bound] = epsilon_from_rates(np.array([tpr]), np.array([fpr]), delta)
    assert bound >= 0.0
    if tpr - fpr <= delta:
        assert bound == 0.0


@settings(deadline=None)
@given(rates, rates, rates)
def test_bound_grows_with_tpr_and_shrinks_with_fpr(tpr: float, other: float, fpr: float) -> None:
    low, high = sorted([tpr, other])
    bounds = epsilon_from_rates(np.array([low, high]), np.array([fpr, fpr]), 1e-5)
    assert bounds[0] <= bounds[1]
    fpr_low, fpr_high = sorted([fpr, other])
    bounds = epsilon_from_rates(np.array([tpr, tpr]), np.array([fpr_low, fpr_high]), 1e-5)
    assert bounds[0] >= bounds[1]


@settings(deadline=None)
@given(epsilons)
def test_bound_is_tight_on_randomised_response(epsilon: float) -> None:
    tpr, fpr = _randomised_response(epsilon)
    [bound] = epsilon_from_rates(np.array([tpr]), np.array([fpr]), 0.0)
    assert bound == pytest.approx(epsilon)


@settings(deadline=None)
@given(epsilons, st.integers(min_value=10, max_value=100_000))
def test_certified_bound_never_exceeds_the_true_epsilon(epsilon: float, rows: int) -> None:
    tpr, fpr = _randomised_response(epsilon)
    # Observed counts at (or, for the false positives, just above) their expectation.
    hits, false_hits = math.floor(tpr * rows), math.ceil(fpr * rows)
    [bound] = certified_epsilon_at(
        np.array([hits]), rows, np.array([false_hits]), rows, delta=0.0
    )
    assert bound <= epsilon


def test_certify_separates_selection_from_certification() -> None:
    rng = np.random.default_rng(0)
    member = np.arange(2000) < 1000
    separated = AttackScores("separated", np.where(member, 1.0, 0.0) + rng.normal(0, 0.1, 2000))
    useless = AttackScores("useless", rng.normal(size=2000))
    bound = certify([useless, separated], member, np.random.default_rng(1), delta=1e-5)
    assert bound.attack == "separated"
    assert bound.selection_rows == bound.certification_rows == 1000
    # 500 members all above the threshold and no non-member: the bound is set by the rows.
    assert 4.0 < bound.epsilon < 7.0
    assert bound.as_metric()["epsilon_point_estimate"] is None  # infinite: no false positive
    nothing = certify([useless], member, np.random.default_rng(1), delta=1e-5)
    assert nothing.epsilon < 0.3
