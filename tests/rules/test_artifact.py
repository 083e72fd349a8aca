"""MLA101 and MLA102: one fixture that fires and one that stays quiet, per rule."""

from __future__ import annotations

import pickle
from pathlib import Path

from tests.conftest import Runner, Workspace


class Custom:
    """Stands for a user's own class: harmless, but nobody has reviewed it."""


def test_mla101_fires_with_import_and_offset(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.hostile, "--select", "MLA101")
    [finding] = result.result("MLA101")["findings"]
    assert finding["severity"] == "critical"
    assert finding["evidence"]["import"] == "posix.system"
    assert finding["location"]["pointer"].startswith("offset ")
    assert finding["cwe"] == ["CWE-502"]


def test_mla101_quiet_on_a_real_model(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA101")
    mla101 = result.result("MLA101")
    assert mla101["status"] == "passed"
    assert mla101["findings"] == []
    assert mla101["metrics"]["joblib_arrays"] > 0


def test_mla101_reports_trailing_data(run_cli: Runner, tmp_path: Path) -> None:
    path = tmp_path / "trailing.pkl"
    path.write_bytes(pickle.dumps([1, 2]) + b"\xff\xfe not a pickle")
    result = run_cli("scan", path, "--select", "MLA101")
    [finding] = result.result("MLA101")["findings"]
    assert finding["title"] == "Unverifiable pickle content (trailing-data)"
    assert finding["severity"] == "high"


def test_mla102_fires_on_unreviewed_class(run_cli: Runner, tmp_path: Path) -> None:
    path = tmp_path / "custom.pkl"
    path.write_bytes(pickle.dumps(Custom()))
    result = run_cli("scan", path, "--select", "MLA102")
    [finding] = result.result("MLA102")["findings"]
    assert finding["severity"] == "high"
    assert finding["evidence"]["import"] == "tests.rules.test_artifact.Custom"
    assert 'allow_globals = ["tests.rules.test_artifact.Custom"]' in finding["message"]
    # The gate refuses the file, so a CI job that runs only the artifact rules fails too.
    assert result.exit_code == 1


def test_mla102_for_a_class_of_the_saving_script(run_cli: Runner, tmp_path: Path) -> None:
    """A user's class pickled from a script is unreviewed (MLA102), not an escape (MLA101)."""
    path = tmp_path / "script_class.pkl"
    path.write_bytes(b"\x80\x04c__main__\nDivideColumns\n)\x81.")
    result = run_cli("scan", path, "--select", "MLA1")
    assert result.result("MLA101")["findings"] == []
    [finding] = result.result("MLA102")["findings"]
    assert finding["severity"] == "high"
    assert 'allow_globals = ["__main__.DivideColumns"]' in finding["message"]
    assert result.exit_code == 1


def test_mla102_quiet_on_a_real_model(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.pipeline_skops, "--select", "MLA102")
    assert result.result("MLA102")["findings"] == []


def test_fingerprint_is_stable_when_offsets_move(run_cli: Runner, tmp_path: Path) -> None:
    """Baselines match findings by fingerprint; a byte offset must not be part of it."""
    first = tmp_path / "a.pkl"
    second = tmp_path / "b.pkl"
    first.write_bytes(pickle.dumps([Custom()]))
    second.write_bytes(pickle.dumps(["padding" * 10, Custom()]))
    fingerprints = []
    for path in (first, second):
        finding = run_cli("scan", path, "--select", "MLA102").result("MLA102")["findings"][0]
        # The rule's own fingerprint; the scoped one also binds the model's bytes.
        fingerprints.append(finding["unscoped_fingerprint"])
    assert fingerprints[0] == fingerprints[1]


def test_mla105_fires_on_a_pickle_based_model(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--select", "MLA105")
    [finding] = result.result("MLA105")["findings"]
    assert finding["severity"] == "low"
    assert "skops" in finding["message"]


def test_mla105_quiet_on_a_safe_format(run_cli: Runner, workspace: Workspace) -> None:
    for model in (workspace.pipeline_onnx, workspace.pipeline_skops):
        result = run_cli("scan", model, "--select", "MLA105")
        assert result.result("MLA105")["findings"] == []
