"""A real scan's report, shared by the renderer tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlaudit.cli.main import main
from tests.conftest import TARGET, Workspace
from tests.plugin_rules import CrashingRule, install_plugin

CRASHING = CrashingRule.meta.id


def scan_to(directory: Path, *arguments: str | Path) -> int:
    """Run ``mlaudit scan`` in-process; returns the exit code."""
    empty_config = directory.parent / f"{directory.name}.toml"
    empty_config.write_text("")
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "scan",
                *map(str, arguments),
                "--config",
                str(empty_config),
                "--profile",
                "quick",
                "-q",
                "-o",
                str(directory),
            ]
        )
    code = exited.value.code
    return code if isinstance(code, int) else 0


@pytest.fixture(scope="session")
def scanned(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every format of a scan of the workspace forest with train and holdout data."""
    out = tmp_path_factory.mktemp("scanned") / "report"
    formats = [
        arg for f in ("html", "sarif", "junit", "md", "cyclonedx") for arg in ("--format", f)
    ]
    scan_to(
        out,
        workspace.rf_joblib,
        "--train",
        workspace.train,
        "--holdout",
        workspace.holdout,
        "--target",
        TARGET,
        "--select",
        "MLA1",
        "--select",
        "MLA2",
        "--select",
        "MLA30",
        "--select",
        "MLA7",
        *formats,
    )
    return out


@pytest.fixture(scope="session")
def scanned_report(scanned: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((scanned / "report.json").read_text())
    return loaded


@dataclass(frozen=True)
class Scanned:
    report: dict[str, Any]
    html: str


def failing_scan(out: Path, workspace: Workspace, *extra: str) -> Scanned:
    """A hostile pickle (MLA101 critical, MLA105 low) and a third-party rule that raises."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        install_plugin(out.parent / f"{out.name}-plugin", monkeypatch)
        code = scan_to(
            out, workspace.hostile, "--select", "MLA1", "--select", CRASHING, "--format", "html",
            *extra,
        )
    assert code == 1  # the critical finding fails the gate either way
    report = json.loads((out / "report.json").read_text())
    return Scanned(report, (out / "report.html").read_text())


@pytest.fixture(scope="session")
def failing(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Scanned:
    """A failed gate with findings and a rule in error, for the verdict's links."""
    return failing_scan(tmp_path_factory.mktemp("failing") / "report", workspace)
