"""report.json: valid against the published schema, stable, and reproducible."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest

from mlaudit.reports.build import _finite
from tests.conftest import TARGET, Runner, Workspace

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "reports" / "report.schema.json"
VOLATILE_RUN_KEYS = ("id", "started_at", "finished_at")


def validate(report: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    validator.validate(report)


# Rules whose metrics are measured times (latency, throughput, load time), and whose query
# count is how many timings it took the percentiles to settle: durations, which the
# determinism contract sets aside like the rules' own duration_s.
TIMING_RULES = frozenset({"MLA801"})


def stable_part(report: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(report))
    for key in VOLATILE_RUN_KEYS:
        copy["run"].pop(key)
    for result in copy["results"]:
        result.pop("duration_s")
        if result["rule_id"] in TIMING_RULES:
            result.pop("metrics")
            result.pop("queries")
    return copy


@pytest.mark.parametrize(
    "case",
    ["clean-joblib", "hostile", "onnx", "skops-artifact-only", "trusted"],
)
def test_reports_validate_against_the_schema(
    run_cli: Runner, workspace: Workspace, case: str
) -> None:
    args: dict[str, list[Any]] = {
        "clean-joblib": [workspace.rf_joblib, "--train", workspace.train, "--holdout",
                         workspace.holdout, "--target", TARGET],
        "hostile": [workspace.hostile, "--data", workspace.holdout],
        "onnx": [workspace.pipeline_onnx, "--data", workspace.holdout, "--target", TARGET],
        "skops-artifact-only": [workspace.pipeline_skops, "--select", "MLA1"],
        "trusted": [workspace.rf_pickle, "--data", workspace.holdout, "--trust-model"],
    }
    result = run_cli("scan", *args[case])
    assert result.exit_code in (0, 1)
    validate(result.report)


def test_schema_rejects_a_report_missing_the_gate(run_cli: Runner, workspace: Workspace) -> None:
    report = run_cli("scan", workspace.rf_joblib, "--select", "MLA1").report
    del report["gate"]
    with pytest.raises(jsonschema.ValidationError):
        validate(report)


def test_same_inputs_and_seed_give_the_same_content(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    args = ["scan", workspace.rf_joblib, "--train", workspace.train, "--holdout",
            workspace.holdout, "--target", TARGET, "--seed", "3"]
    first = run_cli(*args, output_dir=tmp_path / "a").report
    second = run_cli(*args, output_dir=tmp_path / "a").report
    assert first["run"]["id"] != second["run"]["id"]
    assert stable_part(first) == stable_part(second)


def test_top_level_key_order_is_the_contract(run_cli: Runner, workspace: Workspace) -> None:
    report = run_cli("scan", workspace.rf_joblib, "--select", "MLA1").report
    assert list(report) == [
        "schema_version", "tool", "run", "subject", "results", "score", "grade", "scoring",
        "gate", "coverage", "controls", "suppressed", "waivers", "baseline",
    ]


def test_subject_binds_files_by_hash(run_cli: Runner, workspace: Workspace) -> None:
    import hashlib

    report = run_cli("scan", workspace.rf_joblib, "--data", workspace.holdout).report
    model = report["subject"]["model"]
    assert model["sha256"] == hashlib.sha256(workspace.rf_joblib.read_bytes()).hexdigest()
    data = report["subject"]["data"][0]
    assert data["sha256"] == hashlib.sha256(workspace.holdout.read_bytes()).hexdigest()
    assert data["role"] == "data"
    assert data["rows"] == 229


def test_non_finite_metrics_become_null() -> None:
    assert _finite({"a": [math.nan, 1.0, math.inf], "b": (2,)}) == {"a": [None, 1.0, None],
                                                                     "b": [2]}


def test_library_warnings_go_to_the_report_not_stderr(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    import pickle

    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    train = pd.read_csv(workspace.train)
    forest = RandomForestClassifier(n_estimators=3, random_state=0)
    forest.fit(train.drop(columns=[TARGET]), train[TARGET])
    # Stamp the file as written by another scikit-learn version, as a model from a hub would be.
    stamped = pickle.dumps(forest).replace(
        sklearn.__version__.encode(), b"0.0.1".ljust(len(sklearn.__version__), b"0")
    )
    path = tmp_path / "older.pkl"
    path.write_bytes(stamped)
    result = run_cli("scan", path, "--data", workspace.holdout, "--target", TARGET)
    assert result.exit_code == 0, result.stderr
    assert "Warning" not in result.stderr
    assert any("InconsistentVersionWarning" in w for w in result.report["run"]["warnings"])


# --------------------------------------------------------------------------- coverage


def test_an_artifact_only_scan_reports_its_coverage_and_cannot_show_grade_a(
    run_cli: Runner, workspace: Workspace
) -> None:
    """No data and no --target: the behavioural rules never ran, so no "PASSED, grade A"."""
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--select", "MLA2",
                     "--select", "MLA3", "--profile",
                     "standard")
    report = result.report
    validate(report)
    coverage = report["coverage"]
    assert not coverage["complete"]
    assert coverage["not_audited"] == ["robustness", "privacy"]
    assert coverage["rules"]["ran"] == 7
    assert coverage["notes"] == []  # standard is a release profile
    assert report["score"] == pytest.approx(100, abs=1)
    assert report["grade"] == "B"
    assert report["scoring"]["grade_caps_applied"][0]["grade"] == "B"
    selected = len(report["results"])  # every MLA1, MLA2 and MLA3 rule
    assert f"coverage: 7 of {selected} rules ran; not audited: robustness, privacy" in result.stderr
    assert "robustness not audited: MLA201" in result.stderr
    markdown = (result.output_dir / "report.md")
    assert not markdown.exists()  # only json and html by default
    page = (result.output_dir / "report.html").read_text()
    assert f"7 of {selected} rules ran" in page
    assert "partial audit" in page


def test_require_fails_the_gate_when_the_rules_did_not_run(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--select", "MLA2",
                     "--require", "MLA2")
    assert result.exit_code == 1
    [reason] = result.report["gate"]["reasons"]
    assert reason.startswith("required MLA2 was not audited (MLA201 skipped:")
    assert result.report["gate"]["require"] == ["MLA2"]
    assert result.report["grade"] == "C"  # a failed gate caps the grade, complete or not
    config = tmp_path / "mlaudit.toml"
    config.write_text('require = ["MLA1"]\n')
    met = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--config", config,
                  "--format", "md")
    assert met.exit_code == 0, met.stderr
    assert met.report["run"]["config"]["require"] == ["MLA1"]
    assert met.report["coverage"]["complete"]
    assert "**Coverage**: 7 of 7 rules ran" in (met.output_dir / "report.md").read_text()


def test_quick_profile_says_it_is_a_smoke_test(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA1", "--format", "md")
    [note] = result.report["coverage"]["notes"]
    assert "smoke test" in note
    assert "note: profile quick is a smoke test" in result.stderr
    assert "smoke test" in (result.output_dir / "report.md").read_text()
