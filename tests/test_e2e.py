"""End to end: the hostile corpus through the real CLI, and the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TARGET, Runner, Workspace
from tests.fixtures.hostile_pickles import HOSTILE_SAMPLE_NAMES, build_hostile_corpus

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", HOSTILE_SAMPLE_NAMES)
def test_every_hostile_sample_is_flagged_high_blocked_and_never_run(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, name: str
) -> None:
    """Known-dangerous imports are critical; what the scan cannot vouch for is at least high."""
    canary = tmp_path / "canary"
    [sample] = build_hostile_corpus(tmp_path / "corpus", canary, [name])
    result = run_cli("scan", sample.path, "--data", workspace.holdout, "--target", TARGET)
    assert result.exit_code == 1, result.stderr
    findings = [
        f
        for r in result.report["results"]
        if r["rule_id"].startswith("MLA1")
        for f in r["findings"]
    ]
    dangerous = sample.expected_import and sample.expected_verdict == "dangerous"
    wanted = {"critical"} if dangerous else {"high", "critical"}
    assert any(f["severity"] in wanted for f in findings), findings
    assert result.report["subject"]["model"]["load"]["status"] == "blocked"
    assert result.result("MLA702")["status"] == "skipped"
    assert not canary.exists()


def test_console_script_end_to_end(workspace: Workspace, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "mlaudit"
    out = tmp_path / "report"
    completed = subprocess.run(
        # The regularised pipeline: the workspace's fully grown forest memorises (MLA302 high).
        [str(script), "scan", str(workspace.pipeline_skops), "--train", str(workspace.train),
         "--holdout", str(workspace.holdout), "--target", TARGET, "-o", str(out)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert "\x1b[" not in completed.stderr  # no colour codes when not a terminal
    report = json.loads((out / "report.json").read_text())
    assert report["gate"]["passed"] is True


def test_python_dash_m_and_bad_input_without_traceback(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mlaudit", "scan", str(tmp_path / "missing.pkl")],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "mlaudit-report").exists()
