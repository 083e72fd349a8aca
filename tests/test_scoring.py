from __future__ import annotations

import pytest

from mlaudit.findings import Confidence, Finding, Location, RuleResult, Severity, Status
from mlaudit.scoring import GatePolicy, decide_gate, grade_for, rule_score, score_results


def finding(severity: Severity, key: str = "k") -> Finding:
    return Finding("MLA101", "t", "m", severity, Confidence.HIGH, Location("a"), key * 32)


def result(family: str, *findings: Finding, status: Status = Status.FAILED) -> RuleResult:
    return RuleResult("MLA101", "n", family, status, rule_score(findings), findings=findings)


def test_rule_score_deducts_by_severity_and_floors_at_zero() -> None:
    assert rule_score([]) == 100
    assert rule_score([finding(Severity.LOW), finding(Severity.MEDIUM)]) == 80
    assert rule_score([finding(Severity.HIGH)] * 3) == 0


@pytest.mark.parametrize(
    ("score", "grade"), [(100, "A"), (90, "A"), (89.9, "B"), (70, "C"), (60, "D"), (59.9, "F")]
)
def test_grades(score: float, grade: str) -> None:
    assert grade_for(score) == grade


def test_overall_score_is_family_weighted_and_explained() -> None:
    card = score_results([result("artifact"), result("data-quality", finding(Severity.HIGH))])
    assert card.score == pytest.approx((3 * 100 + 1 * 60) / 4, abs=0.05)
    deductions = card.explanation["deductions"]
    assert deductions == [
        {"rule_id": "MLA101", "fingerprint": "k" * 32, "severity": "high", "points": 40.0}
    ]


def test_critical_finding_caps_score_in_grade_f() -> None:
    many_clean = [result("artifact") for _ in range(20)]
    card = score_results([*many_clean, result("artifact", finding(Severity.CRITICAL))])
    assert card.grade == "F"
    assert card.explanation["critical_cap_applied"] is True


def test_skipped_and_error_rules_do_not_count_towards_score() -> None:
    skipped = RuleResult("MLA702", "n", "data-quality", Status.SKIPPED, None, "no data")
    assert score_results([skipped]).score == 100


def test_gate_fail_on_threshold() -> None:
    results = [result("artifact", finding(Severity.MEDIUM))]
    assert decide_gate(results, 85, GatePolicy("high"), None).passed
    failed = decide_gate(results, 85, GatePolicy("medium"), None)
    assert not failed.passed
    assert "MLA101 medium" in failed.reasons[0]
    assert decide_gate(results, 85, GatePolicy("none"), None).passed


def test_gate_min_score_errors_and_blocked_model() -> None:
    error = RuleResult("MLA702", "n", "data-quality", Status.ERROR, None, "boom")
    decision = decide_gate([error], 50, GatePolicy("none", 60.0), "blocked by MLA101")
    assert len(decision.reasons) == 3
    relaxed = decide_gate([error], 50, GatePolicy("none", None, allow_incomplete=True), None)
    assert relaxed.passed
