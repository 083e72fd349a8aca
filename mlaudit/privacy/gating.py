"""When a membership measurement becomes a finding: thresholds on confidence bounds.

The gate decides on lower confidence bounds, never on point estimates, so a finding means the
leak is there at the stated confidence, not that a noisy estimate crossed a line.

The high criterion looks at TPR at ``high_at_fpr`` (1%), which needs 10 / 1% = 1,000
non-members. A smaller holdout does not excuse a leak: the criterion then moves to the
smallest FPR the holdout can evaluate (10 / non-members, up to :data:`MAX_JUDGED_FPR`) and
keeps its ratio: the TPR bound must exceed ``high_tpr_lower_bound`` scaled by the same factor
as the FPR, so the attack must still pick members at the same multiple of its false-positive
rate (5x by default). 600 non-members judge TPR at 1.67% FPR against 8.3%.

A second high criterion looks at the whole ROC: an AUC whose lower bound exceeds
``high_auc_lower_bound`` (0.65). It catches what the low-FPR criterion cannot see: models that
memorise every training row but output tied scores (1-nearest-neighbour, one unpruned tree:
every member scores 1, and so do most non-members), and holdouts too small to evaluate any
low FPR. 0.65 is the calibration panel's choice (``bench/calibration.py``): no well-built
model's bound reached it, every memorising one's exceeded it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.privacy.roc import MIN_EXPECTED_FALSE_POSITIVES, AttackEvaluation, rows_needed

# Beyond this the "low FPR" criterion would judge a mid-ROC point; below 100 non-members only
# the AUC criterion applies.
MAX_JUDGED_FPR = 0.1


@dataclass(frozen=True)
class MembershipThresholds:
    """High: TPR at ``high_at_fpr`` is above ``high_tpr_lower_bound``, or the AUC is above
    ``high_auc_lower_bound``, at the confidence level. Medium: the AUC is above
    ``medium_auc_lower_bound`` at the confidence level."""

    high_at_fpr: float = 0.01
    high_tpr_lower_bound: float = 0.05
    medium_auc_lower_bound: float = 0.6
    high_auc_lower_bound: float = 0.65

    def as_metric(self) -> dict[str, JsonValue]:
        return {
            "high_at_fpr": self.high_at_fpr,
            "high_tpr_lower_bound": self.high_tpr_lower_bound,
            "medium_auc_lower_bound": self.medium_auc_lower_bound,
            "high_auc_lower_bound": self.high_auc_lower_bound,
        }

    def judged_fpr(self, non_members: int) -> float | None:
        """The FPR the high criterion is judged at with this many non-members, if any."""
        if non_members >= rows_needed(self.high_at_fpr):
            return self.high_at_fpr
        smallest = MIN_EXPECTED_FALSE_POSITIVES / non_members
        return smallest if smallest <= MAX_JUDGED_FPR else None

    def tpr_threshold(self, fpr: float) -> float:
        """``high_tpr_lower_bound`` scaled from ``high_at_fpr`` to ``fpr``."""
        return self.high_tpr_lower_bound * max(1.0, fpr / self.high_at_fpr)


@dataclass(frozen=True)
class Verdict:
    severity: Severity
    evaluation: AttackEvaluation
    reason: str


def _tpr_low(evaluation: AttackEvaluation, thresholds: MembershipThresholds) -> float | None:
    """The lower bound of TPR at the FPR the high criterion is judged at, if measured."""
    fpr = thresholds.judged_fpr(evaluation.non_members)
    measured = None if fpr is None else evaluation.tpr_at(fpr)
    return None if measured is None or measured.interval is None else measured.interval.low


def strongest(
    evaluations: Sequence[AttackEvaluation], thresholds: MembershipThresholds
) -> AttackEvaluation:
    """The attack the gate has most evidence against: TPR bound at the gate's FPR, then AUC."""

    def strength(evaluation: AttackEvaluation) -> tuple[float, float, float]:
        low = _tpr_low(evaluation, thresholds)
        return (-1.0 if low is None else low, evaluation.auc.low, evaluation.auc.estimate)

    return max(evaluations, key=strength)


def membership_verdict(
    evaluations: Sequence[AttackEvaluation], thresholds: MembershipThresholds
) -> Verdict | None:
    """The most severe finding any attack justifies, with the attack that justifies it."""
    at = thresholds.judged_fpr(evaluations[0].non_members) if evaluations else None
    required = thresholds.tpr_threshold(at) if at is not None else 1.0
    leaking = [
        e for e in evaluations
        if (low := _tpr_low(e, thresholds)) is not None and low > required
    ]
    if leaking and at is not None:
        worst = max(leaking, key=lambda e: _tpr_low(e, thresholds) or 0.0)
        scaled = (
            "" if at == thresholds.high_at_fpr
            else f", scaled from {thresholds.high_tpr_lower_bound:.1%} at "
            f"{thresholds.high_at_fpr:.1%} because the holdout evaluates no lower FPR"
        )
        return Verdict(
            Severity.HIGH,
            worst,
            f"the {worst.attack} attack finds at least {_tpr_low(worst, thresholds):.1%} of "
            f"members at {at:.1%} false positives ({worst.auc.confidence:.0%} confidence lower "
            f"bound; threshold {required:.1%}{scaled})",
        )
    for severity, bound in (
        (Severity.HIGH, thresholds.high_auc_lower_bound),
        (Severity.MEDIUM, thresholds.medium_auc_lower_bound),
    ):
        separating = [e for e in evaluations if e.auc.low > bound]
        if separating:
            worst = max(separating, key=lambda e: e.auc.low)
            return Verdict(
                severity,
                worst,
                f"the {worst.attack} attack separates members from non-members with AUC "
                f"{worst.auc.estimate:.3f} (lower bound {worst.auc.low:.3f} > {bound:g})",
            )
    return None
