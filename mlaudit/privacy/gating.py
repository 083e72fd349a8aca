"""When a membership measurement becomes a finding: thresholds on confidence bounds.

The gate decides on lower confidence bounds, never on point estimates, so a finding means the
leak is there at the stated confidence, not that a noisy estimate crossed a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlaudit.findings import JsonValue, Severity
from mlaudit.privacy.roc import AttackEvaluation


@dataclass(frozen=True)
class MembershipThresholds:
    """High: TPR at ``high_at_fpr`` is above ``high_tpr_lower_bound`` at the confidence level.
    Medium: the AUC is above ``medium_auc_lower_bound`` at the confidence level."""

    high_at_fpr: float = 0.01
    high_tpr_lower_bound: float = 0.05
    medium_auc_lower_bound: float = 0.6

    def as_metric(self) -> dict[str, JsonValue]:
        return {
            "high_at_fpr": self.high_at_fpr,
            "high_tpr_lower_bound": self.high_tpr_lower_bound,
            "medium_auc_lower_bound": self.medium_auc_lower_bound,
        }


@dataclass(frozen=True)
class Verdict:
    severity: Severity
    evaluation: AttackEvaluation
    reason: str


def _tpr_low(evaluation: AttackEvaluation, fpr: float) -> float | None:
    measured = evaluation.tpr_at(fpr)
    return None if measured is None or measured.interval is None else measured.interval.low


def strongest(
    evaluations: Sequence[AttackEvaluation], thresholds: MembershipThresholds
) -> AttackEvaluation:
    """The attack the gate has most evidence against: TPR bound at the gate's FPR, then AUC."""

    def strength(evaluation: AttackEvaluation) -> tuple[float, float, float]:
        low = _tpr_low(evaluation, thresholds.high_at_fpr)
        return (-1.0 if low is None else low, evaluation.auc.low, evaluation.auc.estimate)

    return max(evaluations, key=strength)


def membership_verdict(
    evaluations: Sequence[AttackEvaluation], thresholds: MembershipThresholds
) -> Verdict | None:
    """The most severe finding any attack justifies, with the attack that justifies it."""
    at = thresholds.high_at_fpr
    leaking = [
        e for e in evaluations
        if (low := _tpr_low(e, at)) is not None and low > thresholds.high_tpr_lower_bound
    ]
    if leaking:
        worst = max(leaking, key=lambda e: _tpr_low(e, at) or 0.0)
        return Verdict(
            Severity.HIGH,
            worst,
            f"the {worst.attack} attack finds at least {_tpr_low(worst, at):.1%} of members at "
            f"{at:.1%} false positives ({worst.auc.confidence:.0%} confidence lower bound; "
            f"threshold {thresholds.high_tpr_lower_bound:.1%})",
        )
    separating = [e for e in evaluations if e.auc.low > thresholds.medium_auc_lower_bound]
    if separating:
        worst = max(separating, key=lambda e: e.auc.low)
        return Verdict(
            Severity.MEDIUM,
            worst,
            f"the {worst.attack} attack separates members from non-members with AUC "
            f"{worst.auc.estimate:.3f} (lower bound {worst.auc.low:.3f} > "
            f"{thresholds.medium_auc_lower_bound:g})",
        )
    return None
