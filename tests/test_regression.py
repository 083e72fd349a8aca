"""diff and scan --baseline: findings by fingerprint, metrics beyond tolerances, the gate."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from mlaudit.compliance.regression import Baseline, MetricKind, compare
from mlaudit.config import Tolerances
from mlaudit.core.findings import (
    Confidence,
    Finding,
    Location,
    ModelIdentity,
    RuleResult,
    Severity,
    Status,
    scope_to_model,
)
from mlaudit.verdict.scoring import GatePolicy, rule_score
from tests.compliance_helpers import report, scan
from tests.conftest import Runner, Workspace
from tests.test_report import validate

TOLERANCES = Tolerances(membership_auc=0.02, membership_tpr=0.02, robust_accuracy=0.05)


def finding(rule: str, key: str, severity: str = "high") -> dict[str, Any]:
    return {
        "rule_id": rule, "title": f"{rule} {key}", "severity": severity,
        "fingerprint": key * 32, "location": {"artifact": "m", "pointer": None},
    }


def result(rule: str, family: str, *findings: dict[str, Any],
           metrics: dict[str, Any] | None = None, status: str = "failed") -> dict[str, Any]:
    return {"rule_id": rule, "family": family, "status": status, "findings": list(findings),
            "metrics": metrics or {}}


def interval(estimate: float, half_width: float = 0.05) -> dict[str, float]:
    return {"estimate": estimate, "low": estimate - half_width, "high": estimate + half_width}


def membership(auc: float, tpr: float, half_width: float = 0.05) -> dict[str, Any]:
    return {
        "auc": interval(auc, half_width),
        "tpr_at_fpr": [
            {"fpr": 0.001, "evaluable": False, "needs_holdout_rows": 10000},
            {"fpr": 0.01, "evaluable": True, **interval(tpr, half_width)},
        ],
    }


def robustness(at_judged: float, elsewhere: float) -> dict[str, Any]:
    """MLA202's nesting: per norm, per method, a curve over ε; the rule judges ε = 0.05."""
    curve = [{"epsilon": 0.05, **interval(at_judged)}, {"epsilon": 0.2, **interval(elsewhere)}]
    return {"epsilon": 0.05, "robust_accuracy": {"linf": {"fgsm": curve, "pgd": curve}}}


# --------------------------------------------------------------------------- findings


def test_findings_are_new_fixed_unchanged_or_worse_by_fingerprint() -> None:
    old = [result("MLA101", "artifact", finding("MLA101", "a"), finding("MLA101", "b", "low")),
           result("MLA105", "artifact", finding("MLA105", "c", "low"))]
    new = [result("MLA101", "artifact", finding("MLA101", "a"), finding("MLA101", "b", "high"),
                  finding("MLA101", "d", "medium"))]
    comparison = compare(old, new, TOLERANCES, "low")
    assert [f["fingerprint"][0] for f in comparison.new] == ["d"]
    assert [f["fingerprint"][0] for f in comparison.fixed] == ["c"]
    assert [f["fingerprint"][0] for f in comparison.unchanged] == ["a"]
    worse = [(w.old["severity"], w.new["severity"]) for w in comparison.worsened]
    assert worse == [("low", "high")]
    assert comparison.known_keys == {"a" * 32}
    assert comparison.regressed
    assert comparison.regressions == (
        "new MLA101 medium: MLA101 d", "worse MLA101 low -> high: MLA101 b"
    )


def test_fail_on_decides_which_new_findings_are_regressions() -> None:
    old = [result("MLA105", "artifact")]
    new = [result("MLA105", "artifact", finding("MLA105", "c", "low"))]
    assert compare(old, new, TOLERANCES, "low").regressed
    assert not compare(old, new, TOLERANCES, "medium").regressed
    assert not compare(old, new, TOLERANCES, "none").regressed


def test_new_vulnerabilities_are_listed_on_their_own() -> None:
    old = [result("MLA601", "dependencies")]
    new = [result("MLA601", "dependencies", finding("MLA601", "v", "critical")),
           result("MLA602", "dependencies", finding("MLA602", "u", "low"))]
    comparison = compare(old, new, TOLERANCES, "low")
    assert [f["rule_id"] for f in comparison.new_vulnerabilities] == ["MLA601"]
    assert len(comparison.new) == 2


# --------------------------------------------------------------------------- metrics


def test_membership_auc_and_tpr_rising_beyond_tolerance_regress() -> None:
    # Without intervals (reports that recorded none) the tolerance alone decides.
    old = [result("MLA302", "privacy", metrics=membership(0.60, 0.05, 0.0))]
    within = [result("MLA302", "privacy", metrics=membership(0.615, 0.065, 0.0))]
    beyond = [result("MLA302", "privacy", metrics=membership(0.65, 0.10, 0.0))]
    assert not compare(old, within, TOLERANCES, "low").regressed
    comparison = compare(old, beyond, TOLERANCES, "low")
    regressed = {(m.kind, m.metric) for m in comparison.metric_regressions}
    assert regressed == {(MetricKind.MEMBERSHIP_AUC, "auc"),
                         (MetricKind.MEMBERSHIP_TPR, "tpr_at_fpr@0.01")}
    assert any("MLA302 auc: 0.6 -> 0.65" in reason for reason in comparison.regressions)
    better = [result("MLA302", "privacy", metrics=membership(0.5, 0.0))]
    assert not compare(old, better, TOLERANCES, "low").regressed


def test_a_retrain_within_its_intervals_is_not_a_regression() -> None:
    """The issue's case: AUC 0.773 -> 0.846 on a retrain with another seed, each ±0.07."""
    old = [result("MLA302", "privacy", metrics=membership(0.773, 0.05, 0.07))]
    retrained = [result("MLA302", "privacy", metrics=membership(0.846, 0.05, 0.07))]
    comparison = compare(old, retrained, TOLERANCES, "low")
    assert not comparison.regressed
    auc = next(m for m in comparison.metrics if m.metric == "auc")
    assert auc.worsened_by == pytest.approx(0.073)
    assert auc.uncertainty == pytest.approx(0.07 * 2**0.5)
    # The same rise measured ten times more precisely is a regression.
    precise = [result("MLA302", "privacy", metrics=membership(0.773, 0.05, 0.007))]
    sharper = [result("MLA302", "privacy", metrics=membership(0.846, 0.05, 0.007))]
    regressions = compare(precise, sharper, TOLERANCES, "low").regressions
    assert any("uncertainty 0.009899" in reason for reason in regressions)


def test_only_the_facing_sides_of_the_intervals_count() -> None:
    """Higher is worse for AUC: the old upper and the new lower reach decide."""
    old = {"auc": {"estimate": 0.6, "low": 0.3, "high": 0.61}}
    new = {"auc": {"estimate": 0.7, "low": 0.69, "high": 0.99}}
    comparison = compare([result("MLA301", "privacy", metrics=old)],
                         [result("MLA301", "privacy", metrics=new)], TOLERANCES, "low")
    [auc] = comparison.metrics
    assert auc.uncertainty == pytest.approx(0.01 * 2**0.5)
    assert auc.regressed


def test_robust_accuracy_falling_at_the_judged_epsilon_regresses() -> None:
    old = [result("MLA202", "robustness", metrics=robustness(0.80, 0.50))]
    small = [result("MLA202", "robustness", metrics=robustness(0.77, 0.10))]
    assert not compare(old, small, TOLERANCES, "low").regressed  # ε = 0.2 is not judged
    large = [result("MLA202", "robustness", metrics=robustness(0.60, 0.50))]
    comparison = compare(old, large, TOLERANCES, "low")
    assert sorted(m.metric for m in comparison.metric_regressions) == [
        "robust_accuracy.linf.fgsm@0.05", "robust_accuracy.linf.pgd@0.05"
    ]
    assert compare(large, old, TOLERANCES, "low").regressed is False


def test_a_change_exactly_at_the_tolerance_is_not_a_regression() -> None:
    old = [result("MLA301", "privacy", metrics=membership(0.60, 0.05))]
    new = [result("MLA301", "privacy", metrics=membership(0.62, 0.07))]
    assert not compare(old, new, TOLERANCES, "low").regressed


def test_metrics_measured_in_one_report_only_are_listed_not_judged() -> None:
    old = [result("MLA302", "privacy", metrics=membership(0.6, 0.05))]
    new = [result("MLA302", "privacy", status="skipped")]
    comparison = compare(old, new, TOLERANCES, "low")
    assert comparison.not_compared == ("MLA302",)
    assert not comparison.regressed


# --------------------------------------------------------------------------- the gate


def rule_result(*findings: Finding) -> RuleResult:
    status = Status.FAILED if findings else Status.PASSED
    return RuleResult("MLA101", "n", "artifact", status, rule_score(findings), findings=findings)


def test_baseline_gate_counts_only_what_is_new(tmp_path: Path) -> None:
    old_finding = Finding("MLA101", "t", "m", Severity.HIGH, Confidence.HIGH, Location("a"),
                          "a" * 32)
    new_finding = Finding("MLA101", "u", "m", Severity.HIGH, Confidence.HIGH, Location("a"),
                          "b" * 32)
    approved = {"results": [result("MLA101", "artifact", finding("MLA101", "a"))],
                "score": 60.0, "run": {"id": "r"}, "subject": {"model": {"sha256": None}}}
    baseline = Baseline(tmp_path / "approved.json", "0" * 64, approved)
    policy = GatePolicy("high", min_score=90)
    gate, record = baseline.gate([rule_result(old_finding)], 60.0, policy, None, TOLERANCES)
    assert gate.passed, gate.reasons  # old finding and the same score: history
    assert record["findings"] == {"new": 0, "worsened": 0, "fixed": 0, "unchanged": 1}
    gate, record = baseline.gate([rule_result(old_finding, new_finding)], 20.0, policy, None,
                                 TOLERANCES)
    assert not gate.passed
    assert any("MLA101 high: u" in reason for reason in gate.reasons)
    assert any("under the minimum 90" in reason for reason in gate.reasons)
    assert record["regressions"] == ["new MLA101 high: u"]
    blocked, _ = baseline.gate([rule_result(old_finding)], 60.0, policy, "blocked", TOLERANCES)
    assert not blocked.passed  # an incomplete audit is never excused by a baseline


def test_a_baseline_excuses_findings_of_its_own_model_only(tmp_path: Path) -> None:
    approved = {"results": [result("MLA101", "artifact", finding("MLA101", "a"))],
                "score": 60.0, "run": {"id": "r"},
                "subject": {"model": {"path": "m.joblib", "sha256": "1" * 64}}}
    baseline = Baseline(tmp_path / "approved.json", "0" * 64, approved)
    same, other = ModelIdentity("m.joblib", "1" * 64), ModelIdentity("m.joblib", "2" * 64)
    bare = Finding("MLA101", "t", "m", Severity.HIGH, Confidence.HIGH, Location("a"), "a" * 32)
    policy = GatePolicy("high")
    for model, passes in ((same, True), (other, False)):
        [scoped] = scope_to_model([rule_result(bare)], model)
        gate, record = baseline.gate([scoped], 60.0, policy, None, TOLERANCES, model=model)
        assert gate.passed is passes
        assert record["same_model"] is passes
        # diff still lines the finding up across the two models.
        assert record["findings"] == {"new": 0, "worsened": 0, "fixed": 0, "unchanged": 1}


# --------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def approved(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("approved") / "report"
    assert scan(out, workspace.rf_joblib, "--select", "MLA1") == 0
    return out / "report.json"


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


def test_diff_of_a_report_with_itself_is_clean(run_cli: Runner, approved: Path) -> None:
    result = run_cli("diff", approved, approved)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "no regression" in result.stdout
    assert "0 new, 0 worse, 0 fixed, 1 unchanged" in result.stdout


def test_diff_exits_1_on_a_regression_in_text_and_json(
    run_cli: Runner, approved: Path, tmp_path: Path
) -> None:
    old = copy.deepcopy(json.loads(approved.read_text()))
    for r in old["results"]:
        r["findings"] = []
    old_path = write(tmp_path / "old.json", old)
    text = run_cli("diff", old_path, approved)
    assert text.exit_code == 1
    assert "  + MLA105 low:" in text.stdout
    assert "regressed: 1 regression(s)" in text.stdout
    as_json = run_cli("diff", old_path, approved, "--format", "json")
    assert as_json.exit_code == 1
    document = json.loads(as_json.stdout)
    assert document["regressed"] is True
    assert [f["rule_id"] for f in document["findings"]["new"]] == ["MLA105"]
    assert run_cli("diff", old_path, approved, "--fail-on", "medium").exit_code == 0
    assert run_cli("diff", approved, old_path).exit_code == 0  # fixed is no regression


def test_diff_tolerances_from_options_and_config(
    run_cli: Runner, approved: Path, tmp_path: Path
) -> None:
    old = json.loads(approved.read_text())
    # Intervals of ±0.01: a rise of 0.04 less its uncertainty (0.014) exceeds 0.02, not 0.05.
    old["results"].append({**result("MLA302", "privacy", metrics=membership(0.6, 0.05, 0.01)),
                           "name": "x", "score": 100})
    new = copy.deepcopy(old)
    new["results"][-1]["metrics"] = membership(0.64, 0.05, 0.01)
    old_path, new_path = write(tmp_path / "o.json", old), write(tmp_path / "n.json", new)
    assert run_cli("diff", old_path, new_path).exit_code == 1
    assert run_cli("diff", old_path, new_path, "--auc-tolerance", "0.05").exit_code == 0
    config = tmp_path / "mlaudit.toml"
    config.write_text("[tolerances]\nmembership_auc = 0.1\n")
    assert run_cli("diff", old_path, new_path, "--config", config).exit_code == 0
    config.write_text("[tolerances]\nmembership_aux = 0.1\n")
    bad = run_cli("diff", old_path, new_path, "--config", config)
    assert bad.exit_code == 2
    assert "unknown tolerance" in bad.stderr


def test_diff_of_unreadable_reports_exits_2(
    run_cli: Runner, approved: Path, tmp_path: Path
) -> None:
    result = run_cli("diff", approved, tmp_path / "missing.json")
    assert result.exit_code == 2
    assert "cannot read report" in result.stderr
    (tmp_path / "x.json").write_text("{}")
    assert run_cli("diff", tmp_path / "x.json", approved).exit_code == 2


def test_scan_against_a_baseline_gates_only_on_what_is_new(
    run_cli: Runner, workspace: Workspace, approved: Path, tmp_path: Path
) -> None:
    plain = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--fail-on", "low")
    assert plain.exit_code == 1  # MLA105 gates without a baseline
    gated = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--fail-on", "low",
                    "--baseline", approved, output_dir=tmp_path / "b")
    assert gated.exit_code == 0, gated.report["gate"]
    document = gated.report
    validate(document)
    assert document["baseline"]["sha256"] == hashlib.sha256(approved.read_bytes()).hexdigest()
    assert document["baseline"]["run_id"] == report(approved.parent)["run"]["id"]
    assert document["baseline"]["findings"]["unchanged"] == 1
    assert document["run"]["config"]["baseline"] == str(approved)


def test_scan_against_a_clean_baseline_fails_on_the_new_finding(
    run_cli: Runner, workspace: Workspace, approved: Path, tmp_path: Path
) -> None:
    clean = json.loads(approved.read_text())
    for r in clean["results"]:
        r["findings"] = []
    baseline = write(tmp_path / "clean.json", clean)
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--fail-on", "low",
                     "--baseline", baseline)
    assert result.exit_code == 1
    assert result.report["baseline"]["regressions"] == [
        "new MLA105 low: Stored as joblib, a format that can carry code"
    ]


def test_an_unreadable_baseline_exits_2_before_scanning(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--baseline", tmp_path / "nope.json")
    assert result.exit_code == 2
    assert "cannot read report" in result.stderr
    assert not (result.output_dir / "report.json").exists()
