from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mlaudit.core.findings import Confidence, Finding, Location, RuleResult, Severity, Status
from mlaudit.reports.console import gate_failures
from mlaudit.verdict.scoring import (
    CauseKind,
    GateCause,
    GateDecision,
    GatePolicy,
    coverage_of,
    decide_gate,
    gate_causes,
    grade_for,
    rule_score,
    score_results,
)


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


# --------------------------------------------------------------------------- coverage


def ran(rule_id: str, family: str, *findings: Finding) -> RuleResult:
    status = Status.FAILED if findings else Status.PASSED
    return RuleResult(rule_id, "n", family, status, rule_score(findings), findings=findings)


def skipped(rule_id: str, family: str, reason: str = "no data: give --data") -> RuleResult:
    return RuleResult(rule_id, "n", family, Status.SKIPPED, None, reason=reason)


# A torch state dict: the artifact rules ran, every behavioural rule was skipped.
STATE_DICT = [
    ran("MLA101", "artifact"),
    ran("MLA105", "artifact"),
    skipped("MLA201", "robustness", "the model is a weights-only file"),
    skipped("MLA202", "robustness", "the model is a weights-only file"),
    skipped("MLA301", "privacy", "no labels: give --target"),
]


def test_coverage_counts_rules_and_names_families_not_audited_with_reasons() -> None:
    coverage = coverage_of(STATE_DICT)
    assert (coverage.selected, coverage.ran, coverage.skipped, coverage.errors) == (5, 2, 3, 0)
    assert not coverage.complete
    assert coverage.summary() == "2 of 5 rules ran; not audited: robustness, privacy"
    robustness = next(f for f in coverage.families if f.family == "robustness")
    # Two rules skipped for one reason are one line naming both.
    assert robustness.reasons == ("MLA201, MLA202 skipped: the model is a weights-only file",)
    assert [f.status for f in coverage.families] == ["audited", "not-audited", "not-audited"]
    partly = coverage_of([*STATE_DICT, ran("MLA204", "robustness"), ran("MLA302", "privacy")])
    assert partly.complete
    assert {f.family: f.status for f in partly.families}["robustness"] == "partial"
    errored = coverage_of([ran("MLA101", "artifact"), RuleResult(
        "MLA105", "n", "artifact", Status.ERROR, None, reason="boom")])
    assert not errored.complete
    assert errored.summary() == "1 of 2 rules ran, 1 in error"


def test_no_grade_a_beside_a_partial_audit_or_a_failed_gate() -> None:
    card = score_results(STATE_DICT)
    assert (card.score, card.grade) == (100.0, "A")
    passed = decide_gate(STATE_DICT, card.score, GatePolicy(), None)
    assert passed.passed  # coverage gates only where the user requires it ...
    shown = card.capped(passed, coverage_of(STATE_DICT))
    assert (shown.score, shown.grade) == (100.0, "B")  # ... but the grade says it
    applied = shown.explanation["grade_caps_applied"]
    assert applied == [{"grade": "B", "reason": "partial audit: 2 of 5 rules ran; not "
                        "audited: robustness, privacy"}]
    # One high finding among ten clean rules averages to grade A, and fails the gate.
    complete = [ran("MLA101", "artifact", finding(Severity.HIGH))] + [
        ran(f"MLA10{n}", "artifact") for n in range(2, 8)
    ] * 2
    failed_card = score_results(complete)
    failed = decide_gate(complete, failed_card.score, GatePolicy(), None)
    assert not failed.passed
    assert failed_card.grade == "A"
    assert failed_card.capped(failed, coverage_of(complete)).grade == "C"
    low = score_results([ran("MLA101", "artifact", *[finding(Severity.HIGH, k) for k in "ab"])])
    assert low.capped(failed, coverage_of(complete)).grade == "F"  # caps never raise a grade


@pytest.mark.parametrize(
    ("require", "reasons"),
    [
        (("MLA1",), []),
        (("MLA2",), ["required MLA2 was not audited (MLA201 skipped: the model is a weights-only "
                     "file; MLA202 skipped: the model is a weights-only file)"]),
        (("mla3", "MLA301"), ["required MLA3 was not audited (MLA301 skipped: no labels: give "
                              "--target)",
                              "required MLA301 was not audited (MLA301 skipped: no labels: give "
                              "--target)"]),
        (("MLA6",), ["required MLA6 was not audited: no selected rule matches it"]),
    ],
)
def test_required_rules_must_run(require: tuple[str, ...], reasons: list[str]) -> None:
    decision = decide_gate(STATE_DICT, 100.0, GatePolicy(require=require), None)
    assert list(decision.reasons) == reasons


def test_a_prefix_is_met_by_one_rule_that_ran_but_not_with_one_in_error() -> None:
    tree_only = [ran("MLA201", "robustness"), skipped("MLA203", "robustness", "not a tree")]
    assert decide_gate(tree_only, 100.0, GatePolicy(require=("MLA2",)), None).passed
    exact = decide_gate(tree_only, 100.0, GatePolicy(require=("MLA203",)), None)
    assert not exact.passed
    errored = [ran("MLA201", "robustness"),
               RuleResult("MLA202", "n", "robustness", Status.ERROR, None, reason="budget")]
    decision = decide_gate(errored, 100.0, GatePolicy(require=("MLA2",), allow_incomplete=True),
                           None)
    assert decision.reasons == ("required MLA2 did not complete (MLA202: budget)",)


# --------------------------------------------------------------------------- gate causes


def _gate_of_every_kind() -> GateDecision:
    results = [
        ran("MLA101", "artifact", finding(Severity.CRITICAL, "c")),
        RuleResult("MLA302", "n", "privacy", Status.FAILED, 40.0, findings=(
            Finding("MLA302", "t", "m", Severity.HIGH, Confidence.HIGH, Location("a"), "h" * 32),
            Finding("MLA302", "t", "m", Severity.LOW, Confidence.HIGH, Location("a"), "l" * 32),
        )),
        RuleResult("MLA201", "n", "robustness", Status.ERROR, None, "RuntimeError: boom"),
        ran("MLA204", "robustness"),
    ]
    return decide_gate(results, 50.0, GatePolicy("high", 60.0, False, ("MLA2", "MLA9")),
                       "blocked by MLA101 os.system")


def test_each_reason_has_its_cause_as_data() -> None:
    gate = _gate_of_every_kind()
    assert not gate.passed
    assert gate.reasons == tuple(cause.text for cause in gate.causes)
    assert [(c.kind, c.rule_id, c.severity, c.fingerprint, c.required) for c in gate.causes] == [
        (CauseKind.FINDING, "MLA101", Severity.CRITICAL, "c" * 32, None),
        (CauseKind.FINDING, "MLA302", Severity.HIGH, "h" * 32, None),
        (CauseKind.SCORE, None, None, None, None),
        (CauseKind.ERROR, "MLA201", None, None, None),
        (CauseKind.REQUIRED_INCOMPLETE, None, None, None, "MLA2"),
        (CauseKind.REQUIRED_NOT_RUN, None, None, None, "MLA9"),
        (CauseKind.LOAD, None, None, None, None),
    ]
    for cause in gate.causes:
        assert GateCause.from_document(cause.document()) == cause
    assert decide_gate([], 100.0, GatePolicy(), None) == GateDecision(())


def test_causes_read_back_from_any_report() -> None:
    """Archived JSON is read as found: an unknown kind or a malformed field reads as
    absent, and a report from before causes existed has its reasons as plain text."""
    odd = GateCause.from_document({"kind": "new-kind", "text": "x", "severity": "dire",
                                   "rule_id": 7})
    assert odd == GateCause(CauseKind.OTHER, "x")
    old = gate_causes({"reasons": ["MLA101 critical: t [fail-on high]"]})
    assert old == (GateCause(CauseKind.OTHER, "MLA101 critical: t [fail-on high]"),)


def test_verdict_line_is_made_from_the_causes_whatever_their_words() -> None:
    """The short forms come from each cause's kind and fields (the score's from the report's
    numbers), so rewording every reason changes none of them."""
    causes = [
        *_gate_of_every_kind().causes,
        GateCause(CauseKind.REGRESSION, "regressed against the baseline: MLA301 auc 0.5 -> 0.7",
                  "MLA301"),
    ]
    reworded = [dataclasses.replace(c, text=f"reworded {n}") for n, c in enumerate(causes)]

    def report(listed: list[GateCause]) -> dict[str, Any]:
        return {"score": 50.0, "gate": {"min_score": 60.0,
                                        "causes": [c.document() for c in listed]}}

    short = gate_failures(report(causes))
    assert gate_failures(report(reworded)) == short
    assert not any("reworded" in line for line in short)
    assert len(short) == 8  # two finding counts, then one line per other cause
