"""The CLI contract: exit codes, one-line errors, no report on errors, selection, gate options."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlaudit.core.findings import Confidence, Finding, Location, RuleResult, Severity, Status
from mlaudit.reports.console import gate_failures
from mlaudit.verdict.scoring import CauseKind, GateCause, GatePolicy, decide_gate, rule_score
from tests.conftest import TARGET, CliResult, Runner, Workspace
from tests.fixtures.hostile_pickles import build_hostile_corpus
from tests.plugin_rules import install_plugin


def assert_usage_error(result: CliResult, fragment: str) -> None:
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mlaudit: error: ")
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not (result.output_dir / "report.json").exists()


def test_clean_model_passes_with_exit_0(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli(
        "scan", workspace.rf_joblib, "--train", workspace.train, "--holdout", workspace.holdout,
        "--target", TARGET,
    )
    assert result.exit_code == 0, result.stderr
    report = result.report
    assert report["gate"]["passed"] is True
    assert report["subject"]["model"]["format"] == "joblib"
    assert report["subject"]["model"]["load"]["status"] == "allowed"
    assert {r["rule_id"] for r in report["results"]} >= {"MLA101", "MLA102", "MLA702"}
    assert "gate PASSED" in result.stderr


@pytest.mark.parametrize("attribute", ["rf_pickle", "pipeline_skops", "pipeline_onnx"])
def test_every_supported_format_loads_and_is_audited(
    run_cli: Runner, workspace: Workspace, attribute: str
) -> None:
    result = run_cli("scan", getattr(workspace, attribute), "--data", workspace.holdout,
                     "--target", TARGET)
    assert result.exit_code == 0, result.stderr
    assert result.result("MLA702")["status"] == "passed"
    assert result.report["subject"]["model"]["classes"] == [0, 1]


def test_hostile_pickle_is_blocked_not_loaded_and_fails_the_gate(
    run_cli: Runner, workspace: Workspace
) -> None:
    result = run_cli("scan", workspace.hostile, "--data", workspace.holdout, "--target", TARGET)
    assert result.exit_code == 1
    assert not workspace.canary.exists()
    report = result.report
    assert report["subject"]["model"]["load"]["status"] == "blocked"
    assert result.result("MLA101")["findings"][0]["severity"] == "critical"
    assert result.result("MLA702")["status"] == "skipped"
    assert result.result("MLA702")["reason"].startswith("model not loaded: blocked by MLA101")
    assert any("was not loaded" in reason for reason in report["gate"]["reasons"])


def test_blocked_model_still_fails_when_its_findings_are_not_gating(
    run_cli: Runner, workspace: Workspace
) -> None:
    """A release check must never pass a model it refused to open."""
    result = run_cli("scan", workspace.hostile, "--data", workspace.holdout, "--fail-on", "none")
    assert result.exit_code == 1
    assert result.report["gate"]["reasons"] == [
        r for r in result.report["gate"]["reasons"] if "was not loaded" in r
    ]


def test_artifact_only_scan_of_hostile_file_fails_on_its_finding(
    run_cli: Runner, workspace: Workspace
) -> None:
    result = run_cli("scan", workspace.hostile, "--select", "MLA1")
    assert result.exit_code == 1
    assert result.report["subject"]["model"]["load"]["status"] == "not-needed"
    assert not workspace.canary.exists()


def test_ignoring_mla101_does_not_open_the_load_gate(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.hostile, "--data", workspace.holdout, "--ignore", "MLA101")
    assert result.exit_code == 1
    assert result.report["subject"]["model"]["load"]["status"] == "blocked"
    assert not workspace.canary.exists()


def test_exit_zero_reports_but_exits_0(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.hostile, "--select", "MLA1", "--exit-zero")
    assert result.exit_code == 0
    assert result.report["gate"]["passed"] is False


def test_min_score_gates(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.hostile, "--select", "MLA1", "--fail-on", "none",
                     "--min-score", "90")
    assert result.exit_code == 1
    assert any("under the minimum 90" in r for r in result.report["gate"]["reasons"])


def test_quiet_prints_only_the_verdict_line(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "-q")
    assert result.exit_code == 0
    [line] = result.stderr.splitlines()
    assert re.fullmatch(r"score [0-9.]+ grade [AB] · gate PASSED · .+", line), line


def test_verdict_line_names_every_reason_the_gate_failed(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    result = run_cli("scan", workspace.hostile, "--select", "MLA1", "--select", "TEST901",
                     "--require", "MLA2", "-q")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("score "), line
    assert line.endswith(
        "gate FAILED: 1 critical finding (MLA101); TEST901 errored; required MLA2 not run"
    ), line
    assert "grade A" not in line


def test_rule_errors_print_one_line_each_without_traceback(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    result = run_cli("scan", workspace.rf_joblib, "--select", "TEST901", "--select", "MLA101")
    assert result.exit_code == 1
    assert "TEST901 error: RuntimeError: boom\n" in result.stderr
    assert "gate FAILED: TEST901 errored" in result.stderr
    assert "Traceback" not in result.stderr
    assert "\x1b[" not in result.stderr  # not a terminal: plain text


def test_a_failed_gate_never_reads_grade_a(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--require", "MLA702")
    assert result.exit_code == 1
    assert result.report["score"] >= 90  # an A by score alone
    assert " grade C · gate FAILED: required MLA702 not run" in result.stderr


def test_verbose_shows_steps_with_elapsed_time(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--data", workspace.holdout, "-v")
    assert "loading joblib model" in result.stderr
    assert re.search(r"^ *[0-9]+\.[0-9]s MLA101 ", result.stderr, re.MULTILINE), result.stderr
    assert re.search(r"^ *[0-9]+\.[0-9]s MLA702 ", result.stderr, re.MULTILINE), result.stderr
    assert re.search(r"^MLA702 .* passed .* [0-9]+\.[0-9] *$", result.stderr, re.MULTILINE)


def test_trust_model_is_shown_prominently(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--data", workspace.holdout, "--trust-model")
    assert result.exit_code == 0
    assert "--trust-model" in result.stderr
    assert result.report["subject"]["model"]["load"]["status"] == "trusted"
    assert result.report["run"]["config"]["trust_model"] is True


def test_select_by_prefix_and_ignore(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--data", workspace.holdout,
                     "--select", "MLA1", "--select", "MLA702", "--ignore", "MLA102")
    ids = [r["rule_id"] for r in result.report["results"]]
    assert "MLA101" in ids
    assert "MLA702" in ids
    assert "MLA102" not in ids
    assert all(i.startswith("MLA1") or i == "MLA702" for i in ids)


def test_missing_inputs_skip_with_reason(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib)
    assert result.exit_code == 0
    mla702 = result.result("MLA702")
    assert mla702["status"] == "skipped"
    assert "no data" in mla702["reason"]


def test_onnx_is_scanned_for_every_reading(run_cli: Runner, workspace: Workspace) -> None:
    """Any file may also read as a pickle, so the pickle rules run on ONNX too, and pass."""
    result = run_cli("scan", workspace.pipeline_onnx, "--select", "MLA101")
    assert result.exit_code == 0, result.stderr
    assert result.result("MLA101")["status"] == "passed"


def test_rule_error_fails_closed_unless_allow_incomplete(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    result = run_cli("scan", workspace.rf_joblib, "--select", "TEST901", "--select", "MLA101")
    assert result.exit_code == 1
    crashed = result.result("TEST901")
    assert crashed["status"] == "error"
    assert crashed["reason"] == "RuntimeError: boom"
    assert result.result("MLA101")["status"] == "passed"
    assert any("audit is incomplete" in r for r in result.report["gate"]["reasons"])
    relaxed = run_cli("scan", workspace.rf_joblib, "--select", "TEST901", "--allow-incomplete")
    assert relaxed.exit_code == 0


def test_rule_over_budget_is_an_error(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    (tmp_path / "mlaudit.toml").write_text("[rules.TEST902]\nbudget_s = 0.2\n")
    result = run_cli("scan", workspace.rf_joblib, "--select", "TEST902")
    assert result.exit_code == 1
    assert result.result("TEST902")["status"] == "error"
    assert "time budget of 0.2 s" in result.result("TEST902")["reason"]
    assert result.report["run"]["budgets"]["per_rule_overrides"] == {"TEST902": 0.2}


def test_rule_options_reach_the_rule(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    (tmp_path / "mlaudit.toml").write_text('[rules.TEST903]\nlabel = "from-config"\n')
    result = run_cli("scan", workspace.rf_joblib, "--select", "TEST903")
    assert result.result("TEST903")["metrics"]["label"] == "from-config"


def test_seed_makes_rule_randomness_reproducible(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)

    def draw(seed: str) -> float:
        result = run_cli("scan", workspace.rf_joblib, "--select", "TEST903", "--seed", seed)
        value: float = result.result("TEST903")["metrics"]["draw"]
        return value

    assert draw("1") == draw("1")
    assert draw("1") != draw("2")


def test_non_positive_budget_is_a_config_error(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    config = tmp_path / "budget.toml"
    config.write_text("[rules.MLA702]\nbudget_s = 0\n")
    assert_usage_error(run_cli("scan", workspace.rf_joblib, "--config", config),
                       "option budget_s for rule MLA702 must be a number > 0 or null, not 0")


def test_environment_overrides_file_and_cli_overrides_environment(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mlaudit.toml").write_text('fail_on = "critical"\nseed = 5\n')
    monkeypatch.setenv("MLAUDIT_SEED", "7")
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1")
    assert result.report["run"]["seed"] == 7
    assert result.report["gate"]["fail_on"] == "critical"
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--seed", "9")
    assert result.report["run"]["seed"] == 9


def test_rules_lists_every_rule(run_cli: Runner) -> None:
    result = run_cli("rules")
    assert result.exit_code == 0
    for rule_id in ("MLA101", "MLA102", "MLA702"):
        assert rule_id in result.stdout


def test_explain_prints_the_documentation(run_cli: Runner) -> None:
    result = run_cli("explain", "mla101")
    assert result.exit_code == 0
    assert "## Why it matters" in result.stdout


def test_help_exits_0(run_cli: Runner) -> None:
    assert run_cli("--help").exit_code == 0
    assert run_cli("scan", "--help").exit_code == 0


# --- scan-artifacts: many files, artifact rules only, never loaded ---------------------------


@pytest.fixture
def artifacts(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A clean pickle and a hostile one (relative to the runner's working directory, as
    pre-commit passes them), and the canary loading the hostile one would create."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "clean.pkl").write_bytes(pickle.dumps({"weights": [0.5, 1.5]}))
    canary = tmp_path / "CANARY"
    [hostile] = build_hostile_corpus(folder, canary, ["p0_global_os_system"])
    return Path("models/clean.pkl"), hostile.path.relative_to(tmp_path), canary


def _lines_by_file(result: CliResult) -> dict[str, str]:
    lines = result.stderr.splitlines()
    by_file = dict(line.split(": ", 1) for line in lines)
    assert len(by_file) == len(lines), result.stderr  # one line per file
    return by_file


def test_scan_artifacts_lists_every_file_and_fails_on_the_hostile_one(
    run_cli: Runner, artifacts: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    clean, hostile, canary = artifacts
    result = run_cli("scan-artifacts", hostile, clean)
    assert result.exit_code == 1, result.stderr
    lines = _lines_by_file(result)
    assert list(lines) == [str(hostile), str(clean)]
    assert "gate FAILED" in lines[str(hostile)]
    assert "worst MLA101 critical: " in lines[str(hostile)]
    assert "os.system" in lines[str(hostile)]
    assert "gate PASSED" in lines[str(clean)]
    assert not canary.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # no report written


def test_scan_artifacts_of_clean_files_exits_0(
    run_cli: Runner, artifacts: tuple[Path, Path, Path]
) -> None:
    clean, _, _ = artifacts
    result = run_cli("scan-artifacts", clean)
    assert result.exit_code == 0, result.stderr
    assert list(_lines_by_file(result)) == [str(clean)]


def test_scan_artifacts_reports_a_missing_file_in_one_line_and_exits_2(
    run_cli: Runner, artifacts: tuple[Path, Path, Path]
) -> None:
    clean, hostile, canary = artifacts
    # Also a name that could read as module:callable: it is a file that is missing, never
    # an import.
    result = run_cli("scan-artifacts", "missing.pkl", hostile, "pkg.module:model", clean)
    assert result.exit_code == 2, result.stderr
    lines = _lines_by_file(result)
    assert lines["missing.pkl"] == "error: no such file"
    assert lines["pkg.module:model"] == "error: no such file"
    assert "gate FAILED" in lines[str(hostile)]  # the files after it were still scanned
    assert "gate PASSED" in lines[str(clean)]
    assert "Traceback" not in result.stderr
    assert not canary.exists()


def test_scan_artifacts_writes_a_report_per_file_only_with_o(
    run_cli: Runner, artifacts: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    clean, hostile, _ = artifacts
    out = tmp_path / "reports"
    result = run_cli("scan-artifacts", clean, hostile, "-o", out, "--format", "sarif")
    assert result.exit_code == 1, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "models_clean.pkl", "models_p0_global_os_system.pkl"
    ]
    for folder in out.iterdir():
        assert sorted(p.name for p in folder.iterdir()) == ["report.json", "report.sarif"]
    report = json.loads((out / "models_clean.pkl" / "report.json").read_text())
    assert report["subject"]["model"]["path"] == str(clean)
    assert report["subject"]["model"]["load"]["status"] == "not-needed"
    assert {r["rule_id"][:4] for r in report["results"]} == {"MLA1"}


def test_scan_artifacts_honours_the_configuration_but_not_its_select(
    run_cli: Runner, artifacts: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, hostile, canary = artifacts
    # The configuration's select is what `mlaudit scan` runs; its fail_on applies here too.
    (tmp_path / "mlaudit.toml").write_text('fail_on = "none"\nselect = ["MLA7"]\n')
    result = run_cli("scan-artifacts", hostile)
    assert result.exit_code == 0, result.stderr
    line = _lines_by_file(result)[str(hostile)]
    assert "gate PASSED" in line
    assert "worst MLA101 critical" in line
    assert not canary.exists()


def test_scan_artifacts_selects_within_the_artifact_rules_only(
    run_cli: Runner, artifacts: tuple[Path, Path, Path]
) -> None:
    _, hostile, _ = artifacts
    narrowed = run_cli("scan-artifacts", hostile, "--select", "MLA105")
    assert narrowed.exit_code == 0, narrowed.stderr
    assert "worst MLA105 low" in narrowed.stderr
    assert_usage_error(run_cli("scan-artifacts", hostile, "--select", "MLA702"),
                       "--select MLA702 is not an artifact rule")


# --- bad input: each exits 2 with one line and leaves no report -------------------------------


def test_missing_model(run_cli: Runner, tmp_path: Path) -> None:
    assert_usage_error(run_cli("scan", tmp_path / "nope.pkl"), "does not exist")


def test_model_is_a_directory(run_cli: Runner, tmp_path: Path) -> None:
    assert_usage_error(run_cli("scan", tmp_path), "is a directory")


def test_empty_model_file(run_cli: Runner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pkl"
    empty.touch()
    assert_usage_error(run_cli("scan", empty), "empty file")


def test_truncated_pickle_is_reported_not_refused(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    """A loader runs every opcode before the break, so a broken pickle is a finding, not exit 2."""
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(workspace.rf_pickle.read_bytes()[:2000])
    result = run_cli("scan", truncated, "--select", "MLA1")
    assert result.exit_code == 1, result.stderr
    severe = [f for f in result.result("MLA107")["findings"] if f["severity"] == "high"]
    assert severe, result.result("MLA107")


def test_truncated_hostile_pickle_names_the_import(run_cli: Runner, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x05\x00\x00\x00touch")
    result = run_cli("scan", truncated, "--select", "MLA1")
    assert result.exit_code == 1, result.stderr
    titles = [f["title"] for f in result.result("MLA101")["findings"]]
    assert any("os.system" in title for title in titles), titles


def test_unknown_format(run_cli: Runner, tmp_path: Path) -> None:
    unknown = tmp_path / "model.bin"
    unknown.write_bytes(bytes(range(256)) * 4)
    assert_usage_error(run_cli("scan", unknown), "unknown model format")


def test_csv_without_target_column(run_cli: Runner, workspace: Workspace) -> None:
    assert_usage_error(
        run_cli("scan", workspace.rf_joblib, "--data", workspace.holdout, "--target", "label"),
        "target column 'label' is not in",
    )


def test_feature_count_mismatch(run_cli: Runner, workspace: Workspace, tmp_path: Path) -> None:
    narrow = tmp_path / "narrow.csv"
    pd.read_csv(workspace.holdout).iloc[:, 3:].to_csv(narrow, index=False)
    assert_usage_error(
        run_cli("scan", workspace.rf_joblib, "--data", narrow, "--target", TARGET),
        "lacks 3 column(s) the model needs",
    )


def test_feature_count_mismatch_without_names(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    wide = tmp_path / "wide.npz"
    frame = pd.read_csv(workspace.holdout)
    np.savez(wide, X=np.hstack([frame.drop(columns=[TARGET]).to_numpy()] * 2),
             y=frame[TARGET].to_numpy())
    assert_usage_error(run_cli("scan", workspace.pipeline_onnx, "--data", wide),
                       "the model takes 8 features but")


def test_model_that_cannot_predict(run_cli: Runner, tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    model = RandomForestClassifier(n_estimators=3).fit(rng.random((20, 2)), [0, 1] * 10)
    model_path = tmp_path / "m.pkl"
    model_path.write_bytes(pickle.dumps(model))
    data = tmp_path / "text.csv"
    pd.DataFrame({"a": ["x", "y"], "b": ["z", "w"]}).to_csv(data, index=False)
    # The report is still written, the artifact rules' results in it; the rules that query
    # the model are in error with the reason, so the gate fails closed (exit 1).
    result = run_cli("scan", model_path, "--data", data, "--select", "MLA1", "--select", "MLA702")
    assert result.exit_code == 1
    assert result.result("MLA101")["status"] == "passed"
    assert result.result("MLA702")["status"] == "error"
    assert result.result("MLA702")["reason"].startswith(
        f"the model cannot predict on data file {data}: ValueError: could not convert string "
        "to float: 'x'; check that the data has the columns, types and encodings the model "
        "was trained on"
    )


def test_unknown_rule_in_select(run_cli: Runner, workspace: Workspace) -> None:
    assert_usage_error(run_cli("scan", workspace.rf_joblib, "--select", "MLA999"),
                       "unknown rule id or prefix 'MLA999'")


def test_unknown_config_key(run_cli: Runner, workspace: Workspace, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("fail_onn = 'high'\n")
    assert_usage_error(run_cli("scan", workspace.rf_joblib, "--config", config),
                       "unknown key 'fail_onn'")


def test_unknown_rule_option(run_cli: Runner, workspace: Workspace, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[rules.MLA702]\nthreshold = 3\n")
    assert_usage_error(run_cli("scan", workspace.rf_joblib, "--config", config),
                       "unknown option 'threshold' for rule MLA702")


def test_unknown_environment_variable(
    run_cli: Runner, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLAUDIT_FAILON", "low")
    assert_usage_error(run_cli("scan", workspace.rf_joblib), "MLAUDIT_FAILON")


def test_bad_option_value_exits_2_not_click_default(
    run_cli: Runner, workspace: Workspace
) -> None:
    assert_usage_error(run_cli("scan", workspace.rf_joblib, "--fail-on", "severe"), "--fail-on")


def test_unknown_option(run_cli: Runner, workspace: Workspace) -> None:
    assert_usage_error(run_cli("scan", workspace.rf_joblib, "--no-such-option"),
                       "--no-such-option")


def test_missing_model_argument(run_cli: Runner) -> None:
    assert_usage_error(run_cli("scan"), "MODEL")


def test_unknown_rule_for_explain(run_cli: Runner) -> None:
    assert_usage_error(run_cli("explain", "MLA999"), "unknown rule")


def test_unwritable_output_dir(run_cli: Runner, workspace: Workspace, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1",
                     output_dir=blocker / "sub")
    assert_usage_error(result, "cannot write the report")


def test_error_leaves_previous_report_untouched(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    first = run_cli("scan", workspace.rf_joblib, "--select", "MLA1")
    before = (first.output_dir / "report.json").read_bytes()
    failed = run_cli("scan", workspace.rf_joblib, "--select", "MLA999")
    assert failed.exit_code == 2
    assert (first.output_dir / "report.json").read_bytes() == before
    assert sorted(p.name for p in first.output_dir.iterdir()) == ["report.html", "report.json"]


# --- the verdict line ------------------------------------------------------------------------


def _ran(rule_id: str, *severities: Severity) -> RuleResult:
    findings = tuple(
        Finding(rule_id, "t", "m", s, Confidence.HIGH, Location("model"), f"{rule_id}{i}")
        for i, s in enumerate(severities)
    )
    return RuleResult(rule_id, "n", "artifact", Status.FAILED, rule_score(findings),
                      findings=findings)


def test_verdict_names_every_kind_of_reason_the_gate_gives() -> None:
    """Fed the gate's own causes, as a report keeps them, so a change in them shows here."""
    results = [
        _ran("MLA101", Severity.CRITICAL),
        _ran("MLA302", Severity.HIGH, Severity.LOW),
        _ran("MLA107", Severity.HIGH),
        RuleResult("MLA201", "n", "robustness", Status.ERROR, None, "RuntimeError: boom"),
        _ran("MLA204"),
    ]
    gate = decide_gate(results, 50.0, GatePolicy("high", 60.0, False, ("MLA2", "MLA9")),
                       "blocked by MLA101 os.system")
    causes = [
        *gate.causes,
        GateCause(CauseKind.REGRESSION, "regressed against the baseline: MLA301 auc 0.5 -> 0.7"),
        GateCause(CauseKind.OTHER, "a reason of a new kind"),
    ]
    report = {"score": 50.0, "gate": {"min_score": 60.0,
                                      "causes": [cause.document() for cause in causes]}}
    assert gate_failures(report) == [
        "1 critical finding (MLA101)",
        "2 high findings (MLA302, MLA107)",
        "score 50 under 60",
        "MLA201 errored",
        "required MLA2 incomplete",
        "required MLA9 not run",
        "model not loaded (blocked)",
        "a reason of a new kind",
        "1 metric regressed against the baseline",
    ]


def test_escape_sequences_in_a_scanned_file_never_reach_the_terminal(tmp_path: Path) -> None:
    # A GLOBAL whose module name carries ESC and BEL: the finding's title and the gate's
    # reason quote it, and the console must print it escaped.
    hostile = tmp_path / "escape.pkl"
    hostile.write_bytes(b"\x80\x02cos\nsys\x1b[31m\x07tem\n(S'true'\ntR.")
    for command in (["scan", str(hostile)], ["scan-artifacts", str(hostile)]):
        completed = subprocess.run(
            [sys.executable, "-m", "mlaudit", *command, "-o", str(tmp_path / "out")]
            if command[0] == "scan" else [sys.executable, "-m", "mlaudit", *command],
            capture_output=True, text=True, check=False, cwd=tmp_path,
        )
        assert completed.returncode == 1, completed.stderr
        assert "\x1b" not in completed.stderr
        assert "\x07" not in completed.stderr
        assert "\\x1b" in completed.stderr
