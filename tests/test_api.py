"""The library API: ``mlaudit.scan`` on files and on objects, ``Audit`` and its outputs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

import mlaudit
from mlaudit.compliance import ENVELOPE_NAME
from mlaudit.compliance.attest import generate_keys
from mlaudit.engine.run import IN_MEMORY_LOAD_REASON, NO_FILE_REASON
from mlaudit.reports.console import Output
from mlaudit.reports.html import HtmlRenderer
from tests.conftest import TARGET, Runner, Workspace
from tests.fixtures.hostile_pickles import build_hostile_corpus
from tests.plugin_rules import CrashingRule, install_plugin
from tests.test_report import validate

# Rules quick enough for every test here: artifact, privacy, data quality.
FAST = ("MLA1", "MLA3", "MLA702")


@pytest.fixture(autouse=True)
def clean_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the CLI tests: an empty working directory (no config file) and no MLAUDIT_* set."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("MLAUDIT_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def frames(workspace: Workspace) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(workspace.train), pd.read_csv(workspace.holdout)


def statuses(report: dict[str, object]) -> dict[str, str]:
    results = report["results"]
    assert isinstance(results, list)
    return {r["rule_id"]: r["status"] for r in results}


def test_import_is_light_and_exports_the_api() -> None:
    code = (
        "import sys, mlaudit\n"
        "heavy = {'pandas', 'sklearn', 'scipy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert {'scan', 'Audit', 'UsageError', 'ConfigError', '__version__'} <= "
        "set(mlaudit.__all__)\n"
        "assert callable(mlaudit.scan) and 'pandas' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (Path(mlaudit.__file__).parent / "py.typed").is_file()


def test_scan_from_paths(workspace: Workspace) -> None:
    audit = mlaudit.scan(
        workspace.rf_joblib, train=workspace.train, holdout=str(workspace.holdout),
        target=TARGET, select=FAST, profile="quick",
    )
    assert isinstance(audit, mlaudit.Audit)
    assert audit.passed
    assert audit.exit_code == 0
    assert audit.report["subject"]["model"]["format"] == "joblib"
    assert audit.report["subject"]["model"]["load"]["status"] == "allowed"
    by_id = {r.rule_id: r for r in audit.results}
    assert by_id["MLA101"].status.value == "passed"
    assert by_id["MLA301"].status.value in ("passed", "failed")
    assert audit.findings == tuple(f for r in audit.results for f in r.findings)
    assert audit.to_dict() == audit.report
    assert audit.to_dict() is not audit.report
    assert audit.report["run"]["command"] == "mlaudit.scan() from Python"


def _scripted_modules() -> set[str]:
    """Modules made in memory rather than imported (no import spec): what a scan that
    registered its model as a module would leave behind."""
    return {name for name, module in list(sys.modules.items())
            if getattr(module, "__spec__", None) is None}


def test_in_memory_estimator_and_frames(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = frames
    columns = list(train.columns)
    model = RandomForestClassifier(n_estimators=20, random_state=0)
    model.fit(train.drop(columns=[TARGET]), train[TARGET])
    modules = _scripted_modules()
    audit = mlaudit.scan(model, train=train, holdout=holdout, target=TARGET, select=FAST,
                         profile="quick")
    assert _scripted_modules() <= modules  # the object went to the engine as it was
    by_id = {r.rule_id: r for r in audit.results}
    # No file: every artifact rule says so; the behavioural rules ran on the object.
    for rule_id in ("MLA101", "MLA102", "MLA107"):
        assert by_id[rule_id].status.value == "skipped"
        assert by_id[rule_id].reason == NO_FILE_REASON
    assert by_id["MLA702"].status.value == "passed"
    assert by_id["MLA301"].status.value in ("passed", "failed")
    model_document = audit.report["subject"]["model"]
    assert model_document["path"] == "<in-memory RandomForestClassifier>"
    assert model_document["source"] == "in-memory"
    assert model_document["type"] == "sklearn.ensemble._forest.RandomForestClassifier"
    assert model_document["format"] is None
    assert (model_document["sha256"], model_document["size"]) == (None, None)
    # Wrapped as the joblib loader wraps the same forest read from a file.
    assert model_document["framework"] == "scikit-learn"
    assert model_document["task"] == "classification"
    assert model_document["classes"] == [0, 1]
    assert model_document["feature_names"] == [c for c in columns if c != TARGET]
    # No gate decided: there were no bytes to scan, and the caller vouches for the object.
    assert model_document["load"] == {"status": "allowed", "reasons": [IN_MEMORY_LOAD_REASON]}
    isolation = audit.report["run"]["isolation"]
    assert isolation["mode"] == "none"
    assert not any(isolation["layers"].values())
    assert any("given in memory" in note for note in isolation["notes"])
    # The frames were hashed as the CSV pandas writes for them, and left as they were.
    data = {d["role"]: d for d in audit.report["subject"]["data"]}
    assert data["train"]["path"] == "<in-memory DataFrame>"
    assert data["train"]["sha256"] == hashlib.sha256(
        train.to_csv(index=False, lineterminator="\n").encode()
    ).hexdigest()
    assert data["holdout"]["rows"] == len(holdout)
    assert list(train.columns) == columns
    validate(audit.to_dict())  # an in-memory scan's report is a valid report like any other


def test_a_file_model_says_where_it_came_from(workspace: Workspace) -> None:
    model = mlaudit.scan(workspace.rf_joblib, select=["MLA1"]).report["subject"]["model"]
    assert (model["source"], model["type"], model["format"]) == ("file", None, "joblib")


def test_in_memory_function_and_artifact_rules_only(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """A function is a model too (framework python); with no rule to query it, the report
    still says what it is, and nothing was loaded."""
    _, holdout = frames

    def always_one(frame: pd.DataFrame) -> np.ndarray:
        return np.ones(len(frame), dtype=int)

    audit = mlaudit.scan(always_one, data=holdout, target=TARGET, select=["MLA1"])
    model = audit.report["subject"]["model"]
    assert (model["source"], model["type"], model["framework"]) == (
        "in-memory", "builtins.function", "python"
    )
    assert model["load"]["status"] == "not-needed"
    assert audit.report["run"]["isolation"]["mode"] == "none"
    assert {r.reason for r in audit.results} == {NO_FILE_REASON}
    validate(audit.to_dict())
    header = HtmlRenderer().render(audit.report).decode().split("</header>")[0]
    assert "&lt;in-memory function&gt; · in memory <code>builtins.function</code>" in header


def test_in_memory_behavioural_rules_still_gate() -> None:
    """A forest that memorised random labels fails the gate on membership inference."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(600, 4)), columns=["a", "b", "c", "d"])
    frame[TARGET] = rng.integers(0, 2, len(frame))
    train, holdout = frame.iloc[:300], frame.iloc[300:]
    forest = RandomForestClassifier(n_estimators=40, random_state=0)
    forest.fit(train.drop(columns=[TARGET]), train[TARGET])
    audit = mlaudit.scan(forest, train=train, holdout=holdout, target=TARGET,
                         select=["MLA301"], profile="quick")
    assert not audit.passed
    assert audit.exit_code == 1
    assert any(r.startswith("MLA301") for r in audit.report["gate"]["reasons"])


def test_in_memory_model_fitted_on_arrays_is_queried_with_its_columns(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, holdout = frames
    model = LogisticRegression(max_iter=500)
    model.fit(train.drop(columns=[TARGET]).to_numpy(), train[TARGET].to_numpy())
    audit = mlaudit.scan(model, data=holdout, target=TARGET, select=["MLA702"])
    assert statuses(audit.report) == {"MLA702": "passed"}


def test_hostile_pickle_is_blocked_and_fails(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    [sample] = build_hostile_corpus(tmp_path / "corpus", canary, ["sklearn_estimator_attribute"])
    data = tmp_path / "data.csv"
    pd.DataFrame(np.ones((10, 4)), columns=list("abcd")).assign(y=[0, 1] * 5).to_csv(
        data, index=False
    )
    audit = mlaudit.scan(sample.path, data=data, target="y", select=["MLA1", "MLA702"])
    assert audit.exit_code == 1
    assert not audit.passed
    assert audit.report["subject"]["model"]["load"]["status"] == "blocked"
    assert any(f.rule_id == "MLA101" and f.severity.value == "critical" for f in audit.findings)
    assert not canary.exists()
    html = audit._repr_html_()
    assert "gate FAILED</strong>: 1 critical finding (MLA101)" in html


def test_write_several_formats_and_sign(workspace: Workspace, tmp_path: Path) -> None:
    audit = mlaudit.scan(workspace.rf_joblib, select=["MLA1"])
    private, _ = generate_keys(tmp_path / "keys", None)
    written = audit.write(tmp_path / "out", formats=("html", "sarif", "md"), sign_key=private)
    assert sorted(p.name for p in written) == sorted(
        ["report.json", "report.html", "report.sarif", "report.md", ENVELOPE_NAME]
    )
    assert json.loads((tmp_path / "out" / "report.json").read_text())["gate"]["passed"] is True
    with pytest.raises(mlaudit.UsageError, match="unknown report format 'pdf'"):
        audit.write(tmp_path / "other", formats=("pdf",))
    assert not (tmp_path / "other").exists()


def test_repr_html_escapes_the_model_name(workspace: Workspace, tmp_path: Path) -> None:
    named = tmp_path / "<script>alert(1)<script>.joblib"
    shutil.copy(workspace.rf_joblib, named)
    audit = mlaudit.scan(named, select=["MLA1"], require=["MLA7"])
    html = audit._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;script&gt;.joblib" in html
    assert "gate FAILED</strong>: required MLA7 not run" in html
    assert "grade A" not in html  # a failed gate caps the grade
    assert "gate FAILED" in repr(audit)


@pytest.mark.parametrize(
    ("arguments", "error", "fragment"),
    [
        ({"fail_on": "severe"}, mlaudit.ConfigError, "fail_on must be one of"),
        ({"select": ["MLA999"]}, mlaudit.UsageError, "unknown rule id or prefix 'MLA999'"),
        (
            {"select": ["MLA101"], "rule_options": {"mla101": {"nope": 1}}},
            mlaudit.ConfigError, "unknown option 'nope' for rule MLA101",
        ),
        ({"data": np.ones((3, 3))}, mlaudit.UsageError, "data must be a data file path or"),
        ({"config": "missing.toml"}, mlaudit.ConfigError, "cannot read config file"),
    ],
)
def test_bad_input_raises_one_line_errors(
    workspace: Workspace, arguments: dict[str, object], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as raised:
        mlaudit.scan(workspace.rf_joblib, **arguments)  # type: ignore[arg-type]
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


def test_bad_in_memory_input_raises(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, _ = frames
    with pytest.raises(mlaudit.UsageError, match="got a int"):
        mlaudit.scan(42)
    with pytest.raises(mlaudit.UsageError, match="got a NoneType"):
        mlaudit.scan(None)
    model = LogisticRegression(max_iter=1000).fit(train.drop(columns=[TARGET]), train[TARGET])
    with pytest.raises(mlaudit.UsageError, match="isolation strict cannot apply"):
        mlaudit.scan(model, data=train, isolation="strict")
    with pytest.raises(mlaudit.InputError, match="target column 'label' is not in the data"):
        mlaudit.scan(model, data=train, target="label")
    # A model that raises when queried leaves the rules that query it in error: a report
    # whose gate fails closed, not an exception (what was found without querying it stands).
    unfitted = mlaudit.scan(LogisticRegression(), data=train, target=TARGET, select=["MLA702"])
    [result] = unfitted.results
    assert result.status.value == "error"
    assert result.reason is not None
    assert result.reason.startswith("the model cannot predict on data file <in-memory DataFrame>")
    assert (unfitted.passed, unfitted.exit_code) == (False, 1)
    with pytest.raises(mlaudit.InputError, match="the holdout DataFrame has columns but no rows"):
        mlaudit.scan(model, holdout=train.iloc[:0], select=["MLA1"])


def test_scan_equals_the_cli(run_cli: Runner, workspace: Workspace) -> None:
    arguments = ["--train", workspace.train, "--holdout", workspace.holdout, "--target", TARGET]
    selection = [part for rule in FAST for part in ("--select", rule)]
    cli = run_cli("scan", workspace.rf_joblib, *arguments, *selection).report
    audit = mlaudit.scan(
        workspace.rf_joblib, train=workspace.train, holdout=workspace.holdout, target=TARGET,
        select=FAST, profile="quick",
    )
    assert audit.report["gate"] == cli["gate"]
    assert statuses(audit.report) == statuses(cli)
    assert audit.report["score"] == cli["score"]
    assert audit.report["subject"]["model"]["sha256"] == cli["subject"]["model"]["sha256"]
    assert cli["run"]["command"].startswith("mlaudit scan ")


def test_a_rule_that_raises_keeps_its_traceback_in_the_report_only(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    audit = mlaudit.scan(workspace.rf_joblib, select=["MLA101", CrashingRule.meta.id])
    shown = io.StringIO()
    Output(Console(file=shown, width=200), quiet=False, verbose=True).summary(audit.report, [])
    (crashed,) = [r for r in audit.report["results"] if r["rule_id"] == CrashingRule.meta.id]
    assert crashed["status"] == "error"
    assert crashed["reason"] == "RuntimeError: boom"
    assert crashed["traceback"].startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError("boom")' in crashed["traceback"]
    assert crashed["traceback"].endswith("RuntimeError: boom\n")
    assert next(r for r in audit.report["results"] if r["rule_id"] == "MLA101")["traceback"] is None
    console, captured = shown.getvalue(), capfd.readouterr()
    assert "TEST901 error: RuntimeError: boom" in console
    for stream in (console, captured.out, captured.err):
        assert "Traceback" not in stream
    validate(audit.to_dict())
    audit.write(tmp_path / "out", formats=("html",))
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<summary>traceback</summary>" in html


def test_a_regressor_the_privacy_rules_cannot_audit_fails_a_gate_that_requires_them() -> None:
    """Membership inference is implemented for classifiers: on a regressor it is skipped,
    which must never read as a privacy pass when the team requires the privacy family."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    frame[TARGET] = frame["a"] * 2.0 + rng.normal(scale=0.1, size=len(frame))
    train, holdout = frame.iloc[:100], frame.iloc[100:]
    model = Ridge().fit(train.drop(columns=[TARGET]), train[TARGET])
    audit = mlaudit.scan(model, train=train, holdout=holdout, target=TARGET,
                         select=["MLA301"], require=["MLA3"], profile="quick")
    assert {r.rule_id: r.status.value for r in audit.results} == {"MLA301": "skipped"}
    assert not audit.passed
    assert audit.exit_code == 1
    assert audit.report["grade"] != "A"
