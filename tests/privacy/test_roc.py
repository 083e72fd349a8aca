"""ROC statistics: property tests against brute force and scikit-learn, and the reporting rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from mlaudit.privacy.roc import auc, evaluate_attack, rows_needed, tpr_at_fpr

# Small integer scores produce the ties that forests' probabilities produce.
scores = st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=40).map(
    lambda values: np.array(values, dtype=float)
)
rates = st.floats(min_value=0.0, max_value=1.0)


def _brute_force_tpr(members: np.ndarray, non_members: np.ndarray, fpr: float) -> float:
    """Largest TPR over thresholds ``score >= t`` (t a score, or above all) with FPR <= fpr."""
    best = 0.0
    for threshold in np.unique(np.concatenate([members, non_members])):
        if (non_members >= threshold).sum() <= np.floor(fpr * len(non_members) + 1e-9):
            best = max(best, float((members >= threshold).mean()))
    return best


# No deadline: shared CI machines make per-example timings noise; these tests check numbers.
@settings(deadline=None)
@given(scores, scores)
def test_auc_is_scikit_learns(members: np.ndarray, non_members: np.ndarray) -> None:
    labels = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    expected = roc_auc_score(labels, np.r_[members, non_members]) if len(set(labels)) > 1 else 0.5
    assert auc(members, non_members) == pytest.approx(expected)


@settings(deadline=None)
@given(scores, scores, rates)
def test_tpr_at_fpr_is_the_best_admissible_threshold(
    members: np.ndarray, non_members: np.ndarray, fpr: float
) -> None:
    assert tpr_at_fpr(members, non_members, fpr) == pytest.approx(
        _brute_force_tpr(members, non_members, fpr)
    )


@settings(deadline=None)
@given(scores, scores, rates, rates)
def test_tpr_at_fpr_grows_with_fpr(
    members: np.ndarray, non_members: np.ndarray, first: float, second: float
) -> None:
    low, high = sorted([first, second])
    assert tpr_at_fpr(members, non_members, low) <= tpr_at_fpr(members, non_members, high)


@settings(deadline=None)
@given(scores, scores, rates)
def test_statistics_ignore_monotone_transformations(
    members: np.ndarray, non_members: np.ndarray, fpr: float
) -> None:
    def transform(x: np.ndarray) -> np.ndarray:
        return np.exp(x / 3.0) - 7.0

    assert auc(transform(members), transform(non_members)) == auc(members, non_members)
    assert tpr_at_fpr(transform(members), transform(non_members), fpr) == tpr_at_fpr(
        members, non_members, fpr
    )


@settings(max_examples=30, deadline=None)
@given(
    st.integers(min_value=5, max_value=300),
    st.integers(min_value=5, max_value=300),
    st.floats(min_value=0.0, max_value=2.0),
    st.integers(min_value=0, max_value=2**16),
)
def test_intervals_contain_the_estimate_and_follow_the_rows_rule(
    members: int, non_members: int, shift: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    values = np.r_[rng.normal(shift, 1, members), rng.normal(0, 1, non_members)]
    member = np.r_[np.ones(members, bool), np.zeros(non_members, bool)]
    levels = (0.01, 0.1)
    evaluation = evaluate_attack(
        "test", values, member, rng, fpr_levels=levels, resamples=100
    )
    assert 0.0 <= evaluation.auc.low <= evaluation.auc.estimate <= evaluation.auc.high <= 1.0
    for level, measured in zip(levels, evaluation.tpr_at_fpr, strict=True):
        if non_members >= rows_needed(level):
            assert measured.interval is not None
            assert 0.0 <= measured.interval.low <= measured.interval.estimate
            assert measured.interval.estimate <= measured.interval.high <= 1.0
            assert measured.interval.estimate == tpr_at_fpr(
                values[member], values[~member], level
            )
        else:
            assert measured.interval is None
            assert measured.needs_rows == rows_needed(level)


def test_rows_needed_is_ten_false_positives() -> None:
    assert [rows_needed(f) for f in (0.001, 0.01, 0.1, 0.05)] == [10000, 1000, 100, 200]


def test_an_attack_with_no_hit_still_has_an_honest_upper_bound() -> None:
    values = np.r_[np.zeros(200), np.ones(200)]  # members score below every non-member
    member = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    evaluation = evaluate_attack(
        "inverted", values, member, np.random.default_rng(0), fpr_levels=(0.1,), resamples=200
    )
    [measured] = evaluation.tpr_at_fpr
    assert measured.interval is not None
    assert measured.interval.estimate == 0.0
    # A percentile bootstrap says [0, 0]; Clopper-Pearson keeps room for what 200 rows can miss.
    assert measured.interval.high == pytest.approx(0.0183, abs=1e-3)


def test_same_generator_state_same_evaluation() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=500)
    member = np.arange(500) < 250
    first, second = (
        evaluate_attack(
            "x", values, member, np.random.default_rng(7), fpr_levels=(0.1,), resamples=100
        ).as_metric()
        for _ in range(2)
    )
    assert first == second


def test_a_tied_block_is_split_at_random_so_low_fpr_keeps_its_bound() -> None:
    # Every member and half the non-members tie at the top score: never split, no threshold
    # has FPR <= 10%; split at random, about 20% of members come before 10% of non-members.
    values = np.r_[np.ones(1000), np.ones(500), np.zeros(500)]
    member = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    assert tpr_at_fpr(values[member], values[~member], 0.1) == 0.0
    evaluation = evaluate_attack(
        "tied", values, member, np.random.default_rng(0), fpr_levels=(0.1,), resamples=200
    )
    [measured] = evaluation.tpr_at_fpr
    assert measured.interval is not None
    assert measured.interval.estimate == pytest.approx(0.2, abs=0.01)
    assert measured.interval.low > 0.15
    assert evaluation.auc.estimate == pytest.approx(auc(values[member], values[~member]), abs=0.02)
