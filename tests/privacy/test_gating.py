"""When membership measurements become findings: both high criteria and the medium one."""

from __future__ import annotations

import numpy as np

from mlaudit.core.findings import Severity
from mlaudit.privacy.gating import MembershipThresholds, membership_verdict
from mlaudit.privacy.roc import AttackEvaluation, evaluate_attack

THRESHOLDS = MembershipThresholds()


def _evaluate(scores: np.ndarray, member: np.ndarray, seed: int = 0) -> AttackEvaluation:
    return evaluate_attack(
        "test", scores, member, np.random.default_rng(seed),
        fpr_levels=(0.01, 0.1), resamples=300,
    )


def _tied_memoriser(rows: int, correct_non_members: float, seed: int) -> AttackEvaluation:
    """A 1-NN-like attack score: every member and most non-members tie at the top score."""
    rng = np.random.default_rng(seed)
    member = np.r_[np.ones(rows, bool), np.zeros(rows, bool)]
    non_member_scores = np.where(rng.random(rows) < correct_non_members, 1.0, 0.0)
    return _evaluate(np.r_[np.ones(rows), non_member_scores], member, seed)


def test_tied_scores_of_a_memoriser_are_high_through_the_auc() -> None:
    # 40% of non-members tie with every member: AUC 0.6 + 0.5 * 0.4 = 0.8, and at low FPR the
    # tied block (randomly ordered) picks members only 2.5x as often as non-members.
    evaluation = _tied_memoriser(600, 0.4, seed=1)
    verdict = membership_verdict([evaluation], THRESHOLDS)
    assert verdict is not None
    assert verdict.severity is Severity.HIGH
    assert "AUC" in verdict.reason
    assert "> 0.65" in verdict.reason


def test_tiny_holdout_is_judged_on_the_auc() -> None:
    rng = np.random.default_rng(2)
    member = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    scores = np.r_[rng.normal(3.0, 1.0, 60), rng.normal(0.0, 1.0, 60)]
    evaluation = _evaluate(scores, member)
    assert THRESHOLDS.judged_fpr(evaluation.non_members) is None
    verdict = membership_verdict([evaluation], THRESHOLDS)
    assert verdict is not None
    assert verdict.severity is Severity.HIGH


def test_a_moderate_separation_is_medium_and_none_is_nothing() -> None:
    rng = np.random.default_rng(3)
    member = np.r_[np.ones(2000, bool), np.zeros(2000, bool)]
    moderate = np.r_[rng.normal(0.75, 1.0, 2000), rng.normal(0.0, 1.0, 2000)]  # AUC ~0.70
    verdict = membership_verdict([_evaluate(moderate, member)], MembershipThresholds(
        high_auc_lower_bound=0.75, high_tpr_lower_bound=0.5
    ))
    assert verdict is not None
    assert verdict.severity is Severity.MEDIUM
    chance = rng.normal(0.0, 1.0, 4000)
    assert membership_verdict([_evaluate(chance, member)], THRESHOLDS) is None


def test_the_low_fpr_criterion_names_the_fpr_it_judged() -> None:
    rng = np.random.default_rng(4)
    member = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    # A fifth of members stand out far beyond every non-member; the rest look like non-members.
    members = np.where(rng.random(1000) < 0.2, 10.0, rng.normal(0.0, 1.0, 1000))
    scores = np.r_[members, rng.normal(0.0, 1.0, 1000)]
    verdict = membership_verdict([_evaluate(scores, member)], THRESHOLDS)
    assert verdict is not None
    assert verdict.severity is Severity.HIGH
    assert "at 1.0% false positives" in verdict.reason
