"""Waivers: parsing, matching, expiry, unused waivers, drafting, and their effect on a scan."""

from __future__ import annotations

import base64
import json
import tomllib
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlaudit.config import resolve
from mlaudit.core.errors import ConfigError
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
from mlaudit.reports.html import HtmlRenderer
from mlaudit.verdict.scoring import rule_score
from mlaudit.verdict.waivers import PLACEHOLDER, Waiver, WaiverStatus, apply_waivers, parse_waivers
from tests.compliance_helpers import keys, report, scan
from tests.conftest import Runner, Workspace
from tests.test_report import validate

TODAY = date(2026, 6, 1)


def finding(rule: str, key: str, artifact: str = "model.joblib",
            severity: Severity = Severity.HIGH) -> Finding:
    return Finding(rule, f"{rule} {key}", "m", severity, Confidence.HIGH, Location(artifact),
                   key * 32)


def result(rule: str, *findings: Finding) -> RuleResult:
    status = Status.FAILED if findings else Status.PASSED
    return RuleResult(rule, "n", "artifact", status, rule_score(findings), findings=findings)


# --------------------------------------------------------------------------- parsing


def test_waivers_parse_from_mlaudit_toml_and_pyproject(tmp_path: Path) -> None:
    (tmp_path / "mlaudit.toml").write_text(
        '[[waivers]]\nfingerprint = "' + "a" * 32 + '"\nreason = "accepted"\n'
        'owner = "me"\nexpires = 2026-12-31\n'
        '[[waivers]]\nrule = "mla105"\nartifact = "*.joblib"\nreason = "joblib is served"\n'
    )
    waivers = resolve({}, None, cwd=tmp_path, environ={}).waivers
    assert waivers == (
        Waiver("accepted", fingerprint="a" * 32, owner="me", expires=date(2026, 12, 31)),
        Waiver("joblib is served", rule="MLA105", artifact="*.joblib"),
    )
    pyproject = tmp_path / "sub" / "pyproject.toml"
    pyproject.parent.mkdir()
    pyproject.write_text('[[tool.mlaudit.waivers]]\nrule = "MLA101"\nreason = "r"\n')
    assert resolve({}, None, cwd=pyproject.parent, environ={}).waivers == (
        Waiver("r", rule="MLA101"),
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('rule = "MLA101"', "reason is required"),
        ('rule = "MLA101"\nreason = ""', "reason must be a non-empty string"),
        ('rule = "MLA101"\nreason = "TODO: why"', "placeholder"),
        ('rule = "MLA101"\nreason = "ok"\nowner = "TODO: who"', "owner is still the TODO"),
        ('reason = "ok"', "either fingerprint or rule"),
        (f'rule = "MLA101"\nfingerprint = "{"a" * 32}"\nreason = "ok"', "either fingerprint"),
        ('fingerprint = "abc"\nreason = "ok"', "32 hex digits"),
        (f'fingerprint = "{"a" * 32}"\nartifact = "x"\nreason = "ok"', "artifact narrows"),
        ('rule = "pickle"\nreason = "ok"', "rule id"),
        ('rule = "MLA101"\nreason = "ok"\nexpires = "2026-01-01"', "TOML date"),
        ('rule = "MLA101"\nreason = "ok"\nexpires = 2026-01-01T10:00:00', "TOML date"),
        ('rule = "MLA101"\nreason = "ok"\nresaon = "x"', "unknown key 'resaon'"),
    ],
)
def test_invalid_waivers_are_config_errors(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "mlaudit.toml").write_text(f"[[waivers]]\n{table}\n")
    with pytest.raises(ConfigError, match=message) as raised:
        resolve({}, None, cwd=tmp_path, environ={})
    assert "waiver 1" in str(raised.value)


def test_waivers_must_be_an_array_of_tables() -> None:
    with pytest.raises(ConfigError, match="array of tables"):
        parse_waivers({"rule": "MLA101"}, "f")


def test_waivers_and_tolerances_cannot_come_from_the_environment(tmp_path: Path) -> None:
    for name in ("MLAUDIT_WAIVERS", "MLAUDIT_TOLERANCES"):
        with pytest.raises(ConfigError, match=name):
            resolve({}, None, cwd=tmp_path, environ={name: "x"})


# --------------------------------------------------------------------------- matching


def test_fingerprint_rule_and_artifact_matching() -> None:
    joblib_finding = finding("MLA105", "a", "models/m.joblib")
    skops_finding = finding("MLA105", "b", "models/m.skops")
    other = finding("MLA101", "c")
    assert Waiver("r", fingerprint="a" * 32).matches(joblib_finding)
    assert not Waiver("r", fingerprint="a" * 32).matches(skops_finding)
    by_rule = Waiver("r", rule="MLA105")
    assert by_rule.matches(joblib_finding)
    assert by_rule.matches(skops_finding)
    assert not by_rule.matches(other)
    narrowed = Waiver("r", rule="MLA105", artifact="*.joblib")
    assert narrowed.matches(joblib_finding)
    assert not narrowed.matches(skops_finding)


def test_applied_waivers_suppress_and_rescore() -> None:
    results = [result("MLA105", finding("MLA105", "a")), result("MLA101", finding("MLA101", "b"))]
    outcome = apply_waivers(results, [Waiver("r", rule="MLA105")], TODAY)
    waived, untouched = outcome.results
    assert waived.findings == ()
    assert waived.status is Status.PASSED
    assert waived.score == 100
    assert untouched is results[1]
    assert [s.finding.fingerprint for s in outcome.suppressed] == ["a" * 32]
    assert [u.status for u in outcome.uses] == [WaiverStatus.APPLIED]


def test_a_waiver_holds_through_its_expiry_day_and_not_after() -> None:
    results = [result("MLA105", finding("MLA105", "a"))]
    waiver = Waiver("r", rule="MLA105", expires=TODAY)
    on_the_day = apply_waivers(results, [waiver], TODAY)
    assert on_the_day.suppressed
    assert on_the_day.uses[0].status is WaiverStatus.APPLIED
    after = apply_waivers(results, [waiver], date(2026, 6, 2))
    assert after.suppressed == ()
    assert after.results[0].findings == results[0].findings
    assert after.uses[0].status is WaiverStatus.EXPIRED
    assert after.uses[0].matched == 1


def test_unused_waivers_are_reported() -> None:
    outcome = apply_waivers([result("MLA101")], [Waiver("r", rule="MLA105")], TODAY)
    assert outcome.uses[0].status is WaiverStatus.UNUSED
    assert outcome.uses[0].matched == 0


def test_the_narrowest_matching_waiver_is_recorded() -> None:
    results = [result("MLA105", finding("MLA105", "a"))]
    broad = Waiver("broad", rule="MLA105")
    exact = Waiver("exact", fingerprint="a" * 32)
    outcome = apply_waivers(results, [broad, exact], TODAY)
    assert outcome.suppressed[0].waiver is exact
    assert [u.status for u in outcome.uses] == [WaiverStatus.APPLIED, WaiverStatus.APPLIED]


RULES = st.sampled_from(["MLA101", "MLA105", "MLA201"])
KEYS = st.sampled_from(["a", "b", "c", "d"])
ARTIFACTS = st.sampled_from(["m.joblib", "m.skops", "data.csv"])
WAIVERS = st.one_of(
    st.builds(lambda k, e: Waiver("r", fingerprint=k * 32, expires=e), KEYS,
              st.none() | st.dates(date(2026, 5, 30), date(2026, 6, 3))),
    st.builds(lambda r, a, e: Waiver("r", rule=r, artifact=a, expires=e), RULES,
              st.none() | st.sampled_from(["*.joblib", "m.*", "*.csv"]),
              st.none() | st.dates(date(2026, 5, 30), date(2026, 6, 3))),
)


@settings(max_examples=300, deadline=None)
@given(
    found=st.lists(st.tuples(RULES, KEYS, ARTIFACTS), max_size=8,
                   unique_by=lambda t: t[1]),
    waivers=st.lists(WAIVERS, max_size=5),
)
def test_waiving_partitions_findings_by_the_active_waivers(
    found: list[tuple[str, str, str]], waivers: list[Waiver]
) -> None:
    findings = [finding(rule, key, artifact) for rule, key, artifact in found]
    results = [result(rule, *(f for f in findings if f.rule_id == rule))
               for rule in sorted({f.rule_id for f in findings})]
    outcome = apply_waivers(results, waivers, TODAY)
    active = [w for w in waivers if not w.expired(TODAY)]
    expected = {f.fingerprint for f in findings if any(w.matches(f) for w in active)}
    kept = [f for r in outcome.results for f in r.findings]
    assert {s.finding.fingerprint for s in outcome.suppressed} == expected
    assert sorted(f.fingerprint for f in kept) == sorted(
        f.fingerprint for f in findings if f.fingerprint not in expected
    )
    for use in outcome.uses:
        assert use.matched == sum(use.waiver.matches(f) for f in findings)
        if use.status is WaiverStatus.UNUSED:
            assert use.matched == 0
    for waived in outcome.results:
        assert waived.score == rule_score(waived.findings)


# --------------------------------------------------------------------------- in a scan


def _waiver_config(fingerprint: str, expires: str = "2999-12-31") -> str:
    return (
        f'fail_on = "low"\n[[waivers]]\nfingerprint = "{fingerprint}"\n'
        f'reason = "joblib is what serving loads"\nowner = "ml-platform"\nexpires = {expires}\n'
        '[[waivers]]\nrule = "MLA104"\nreason = "no such finding"\n'
    )


@pytest.fixture(scope="module")
def mla105(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The fingerprint of the forest's one low finding (MLA105: joblib is pickle-based)."""
    out = tmp_path_factory.mktemp("plain") / "report"
    assert scan(out, workspace.rf_joblib, "--select", "MLA1", config='fail_on = "low"\n') == 1
    (found,) = [f for r in report(out)["results"] for f in r["findings"]]
    assert found["rule_id"] == "MLA105"
    return str(found["fingerprint"])


def test_a_waived_finding_is_shown_and_does_not_gate(
    workspace: Workspace, tmp_path: Path, mla105: str
) -> None:
    out = tmp_path / "report"
    private, _ = keys(tmp_path / "keys")
    code = scan(out, workspace.rf_joblib, "--select", "MLA1", "--sign-key", private,
                config=_waiver_config(mla105))
    assert code == 0
    document = report(out)
    validate(document)
    assert all(not r["findings"] for r in document["results"])
    assert document["score"] == 100
    (suppressed,) = document["suppressed"]
    assert suppressed["finding"]["fingerprint"] == mla105
    assert suppressed["waiver"]["owner"] == "ml-platform"
    assert [(w["status"], w["matched"]) for w in document["waivers"]] == [
        ("applied", 1), ("unused", 0)
    ]
    assert document["controls"]["OWASP-ML06"]["waived"] == 1
    page = HtmlRenderer().render(document).decode()
    assert "Waived findings" in page
    assert "joblib is what serving loads" in page
    assert ">unused<" in page
    # The signature covers the waivers: they are in the signed predicate.
    envelope = json.loads((out / "report.intoto.json").read_bytes())
    predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    assert predicate["waivers"] == document["waivers"]
    assert predicate["suppressed"] == [{"ruleId": "MLA105", "fingerprint": mla105}]


def test_an_expired_waiver_stops_suppressing_and_is_reported(
    workspace: Workspace, tmp_path: Path, mla105: str
) -> None:
    out = tmp_path / "report"
    code = scan(out, workspace.rf_joblib, "--select", "MLA1",
                config=_waiver_config(mla105, expires="2020-01-01"))
    assert code == 1
    document = report(out)
    validate(document)
    assert document["suppressed"] == []
    assert document["waivers"][0]["status"] == "expired"
    assert any("MLA105" in reason for reason in document["gate"]["reasons"])


# --------------------------------------------------------------------------- drafting


def test_baseline_drafts_waivers_a_person_must_fill_in(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, mla105: str
) -> None:
    out = tmp_path / "report"
    scan(out, workspace.rf_joblib, "--select", "MLA1")
    drafted = tmp_path / "waivers.toml"
    result = run_cli("baseline", out / "report.json", "-o", drafted)
    assert result.exit_code == 0, result.stderr
    text = drafted.read_text()
    assert f'fingerprint = "{mla105}"' in text
    assert "# MLA105 low:" in text
    assert tomllib.loads(text)["waivers"][0]["expires"] > date.today()
    # Left as drafted, the file is a config error: the scan exits 2 and writes nothing.
    unfilled = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--config", drafted)
    assert unfilled.exit_code == 2
    assert PLACEHOLDER in unfilled.stderr
    assert not (unfilled.output_dir / "report.json").exists()
    filled = drafted.read_text().replace("TODO: why this finding is acceptable", "served as is")
    drafted.write_text(filled.replace("TODO: who answers for it", "ml-platform"))
    accepted = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--fail-on", "low",
                       "--config", drafted)
    assert accepted.exit_code == 0, accepted.stderr
    assert accepted.report["suppressed"][0]["finding"]["fingerprint"] == mla105
    # Drafting over an existing file would lose its reasons.
    again = run_cli("baseline", out / "report.json", "-o", drafted)
    assert again.exit_code == 2
    assert "exists" in again.stderr


def test_baseline_for_pyproject_and_stdout(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    scan(out, workspace.rf_joblib, "--select", "MLA1")
    result = run_cli("baseline", out / "report.json", "--pyproject")
    assert result.exit_code == 0
    assert "[[tool.mlaudit.waivers]]" in result.stdout
    assert len(tomllib.loads(result.stdout)["tool"]["mlaudit"]["waivers"]) == 1


def test_baseline_of_an_unreadable_report_exits_2(run_cli: Runner, tmp_path: Path) -> None:
    result = run_cli("baseline", tmp_path / "missing.json")
    assert result.exit_code == 2
    assert "cannot read report" in result.stderr


# --------------------------------------------------------------------------- scoping

MODEL_A = ModelIdentity("models/churn-v1.joblib", "a" * 64)
MODEL_B = ModelIdentity("models/fraud.joblib", "b" * 64)


def membership_result(severity: Severity) -> RuleResult:
    leak = finding("MLA302", "m", severity=severity)
    return RuleResult("MLA302", "n", "privacy", Status.FAILED, rule_score([leak]),
                      findings=(leak,))


def test_fingerprints_are_bound_to_the_model() -> None:
    [on_a] = scope_to_model([membership_result(Severity.HIGH)], MODEL_A)[0].findings
    [on_b] = scope_to_model([membership_result(Severity.HIGH)], MODEL_B)[0].findings
    assert on_a.fingerprint != on_b.fingerprint
    assert on_a.unscoped_fingerprint == on_b.unscoped_fingerprint == "m" * 32
    entry_point = ModelIdentity("pkg.mod:model", None)
    assert entry_point.key == "reference:pkg.mod:model"


def test_a_waiver_for_one_models_medium_finding_hides_nothing_else() -> None:
    """The issue's case: a waiver written for model A's medium MLA302 finding suppressed
    model B's high one (AUC 0.98). Scoped, it covers exactly what it was written for."""
    [written_for] = scope_to_model([membership_result(Severity.MEDIUM)], MODEL_A)[0].findings
    waiver = Waiver("accepted for v1", fingerprint=written_for.fingerprint, model=MODEL_A.sha256,
                    max_severity=Severity.MEDIUM)
    assert waiver.unscoped is None
    on_a = apply_waivers([membership_result(Severity.MEDIUM)], [waiver], TODAY, MODEL_A)
    assert len(on_a.suppressed) == 1
    for results, model in (
        ([membership_result(Severity.HIGH)], MODEL_B),  # another model
        ([membership_result(Severity.HIGH)], MODEL_A),  # the same model, but worse
    ):
        outcome = apply_waivers(results, [waiver], TODAY, model)
        assert outcome.suppressed == ()
        assert outcome.uses[0].status is WaiverStatus.UNUSED
    by_rule = Waiver("r", rule="MLA302", model="models/churn-*.joblib",
                     max_severity=Severity.HIGH)
    assert apply_waivers([membership_result(Severity.HIGH)], [by_rule], TODAY, MODEL_A).suppressed
    assert not apply_waivers(
        [membership_result(Severity.HIGH)], [by_rule], TODAY, MODEL_B
    ).suppressed


def test_unscoped_waivers_keep_working_with_a_warning() -> None:
    """A waiver file from before scoping names the rule's own fingerprint and no model."""
    legacy = Waiver("old file", fingerprint="m" * 32)
    outcome = apply_waivers([membership_result(Severity.HIGH)], [legacy], TODAY, MODEL_B)
    assert len(outcome.suppressed) == 1
    [warning] = outcome.warnings
    assert warning.startswith(f"waiver for fingerprint {'m' * 32} names no model and no "
                              "max_severity: it applies to any model at any severity")
    assert outcome.uses[0].document()["warning"] == warning
    half = Waiver("r", rule="MLA302", model="models/*")
    assert "names no max_severity: it applies to this model at any severity" in (
        half.unscoped or ""
    )


def test_scoped_waiver_keys_parse_and_are_checked(tmp_path: Path) -> None:
    [waiver] = parse_waivers(
        [{"rule": "MLA302", "model": "A" * 64, "max_severity": "medium", "reason": "r"}], "t"
    )
    assert (waiver.model, waiver.max_severity) == ("a" * 64, Severity.MEDIUM)
    with pytest.raises(ConfigError, match="max_severity must be one of info, low"):
        parse_waivers([{"rule": "MLA302", "max_severity": "severe", "reason": "r"}], "t")


def test_a_scan_warns_about_an_unscoped_waiver_and_drafts_scoped_ones(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, mla105: str
) -> None:
    config = tmp_path / "waivers.toml"  # not mlaudit.toml: the plain scan below reads none
    config.write_text(_waiver_config(mla105))
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--config", config)
    assert result.exit_code == 0
    assert any("names no model" in w for w in result.report["run"]["warnings"])
    assert "warning: waiver for fingerprint" in result.stderr
    plain = run_cli("scan", workspace.rf_joblib, "--select", "MLA1",
                    output_dir=tmp_path / "plain")
    drafted = run_cli("baseline", plain.output_dir / "report.json")
    [draft] = tomllib.loads(drafted.stdout.replace("TODO", "x"))["waivers"]
    assert draft["model"] == plain.report["subject"]["model"]["sha256"]
    assert draft["max_severity"] == "low"
