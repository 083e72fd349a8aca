"""Scores, grade and the gate decision, each explained in the report.

Rule score: 100 minus points per finding by severity, floored at 0. Overall score: the mean of
rule scores weighted by family, over rules that ran. A critical finding caps the overall score
at the top of grade F, because no average may hide "this file runs code when loaded".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mlaudit.findings import Finding, JsonValue, RuleResult, Severity, Status

SEVERITY_POINTS: Mapping[Severity, float] = {
    Severity.INFO: 0.0,
    Severity.LOW: 5.0,
    Severity.MEDIUM: 15.0,
    Severity.HIGH: 40.0,
    Severity.CRITICAL: 100.0,
}
FAMILY_WEIGHTS: Mapping[str, float] = {
    "artifact": 3.0,
    "robustness": 2.0,
    "privacy": 2.0,
    "personal-data": 2.0,
    "code": 1.0,
    "dependencies": 1.0,
    "data-quality": 1.0,
    "serving": 0.5,
}
GRADES: Sequence[tuple[float, str]] = ((90.0, "A"), (80.0, "B"), (70.0, "C"), (60.0, "D"))
CRITICAL_CAP = 59.0
FAIL_ON_CHOICES = ("info", "low", "medium", "high", "critical", "none")


def rule_score(findings: Iterable[Finding]) -> float:
    return max(0.0, 100.0 - sum(SEVERITY_POINTS[f.severity] for f in findings))


def grade_for(score: float) -> str:
    return next((grade for floor, grade in GRADES if score >= floor), "F")


@dataclass(frozen=True)
class Scorecard:
    score: float
    grade: str
    explanation: dict[str, JsonValue]


def score_results(results: Sequence[RuleResult]) -> Scorecard:
    scored = [r for r in results if r.status in (Status.PASSED, Status.FAILED)]
    deductions: list[JsonValue] = [
        {
            "rule_id": f.rule_id,
            "fingerprint": f.fingerprint,
            "severity": f.severity.value,
            "points": SEVERITY_POINTS[f.severity],
        }
        for r in scored
        for f in r.findings
        if SEVERITY_POINTS[f.severity] > 0
    ]
    weight_total = sum(FAMILY_WEIGHTS[r.family] for r in scored)
    if weight_total:
        weighted = sum(FAMILY_WEIGHTS[r.family] * (r.score or 0.0) for r in scored)
        score = round(weighted / weight_total, 1)
    else:
        score = 100.0
    capped = any(f.severity is Severity.CRITICAL for r in scored for f in r.findings)
    if capped:
        score = min(score, CRITICAL_CAP)
    explanation: dict[str, JsonValue] = {
        "method": "rule score = 100 - points per finding (floor 0); overall = family-weighted "
        "mean of the scores of rules that ran; any critical finding caps the overall score "
        f"at {CRITICAL_CAP:g}",
        "severity_points": {s.value: p for s, p in SEVERITY_POINTS.items()},
        "family_weights": {family: w for family, w in FAMILY_WEIGHTS.items()},
        "grades": {grade: floor for floor, grade in [*GRADES, (0.0, "F")]},
        "critical_cap_applied": capped,
        "deductions": deductions,
    }
    return Scorecard(score, grade_for(score), explanation)


@dataclass(frozen=True)
class GatePolicy:
    fail_on: str = "high"
    min_score: float | None = None
    allow_incomplete: bool = False


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: tuple[str, ...]


def decide_gate(
    results: Sequence[RuleResult],
    score: float,
    policy: GatePolicy,
    model_blocked_reason: str | None,
) -> GateDecision:
    """Every reason the gate fails, in a stable order; passing means there were none."""
    reasons: list[str] = []
    if policy.fail_on != "none":
        threshold = Severity(policy.fail_on)
        for result in results:
            for f in result.findings:
                if f.severity >= threshold:
                    where = f" ({f.location.pointer})" if f.location.pointer else ""
                    reasons.append(
                        f"{f.rule_id} {f.severity.value}: {f.title}{where} "
                        f"[fail-on {policy.fail_on}]"
                    )
    if policy.min_score is not None and score < policy.min_score:
        reasons.append(f"score {score:g} is under the minimum {policy.min_score:g}")
    errors = [r for r in results if r.status is Status.ERROR]
    if errors and not policy.allow_incomplete:
        for r in errors:
            reasons.append(f"{r.rule_id} could not complete ({r.reason}); the audit is incomplete")
    if model_blocked_reason is not None:
        reasons.append(
            "the model was not loaded, so its behaviour was not audited: " + model_blocked_reason
        )
    return GateDecision(not reasons, tuple(reasons))
