from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlaudit.errors import UsageError
from mlaudit.registry import registered_rules, select_rules
from tests.conftest import Runner, Workspace
from tests.plugin_rules import install_plugin


def test_builtin_rules_are_registered_by_id() -> None:
    ids = [rule.id for rule in registered_rules()]
    assert ids == sorted(ids)
    assert {"MLA101", "MLA102", "MLA702"} <= set(ids)


def test_selection_by_prefix_case_insensitive() -> None:
    available = registered_rules()
    selected = [r.id for r in select_rules(available, ["mla10"], ["MLA102"])]
    assert "MLA101" in selected
    assert "MLA102" not in selected
    assert all(rule_id.startswith("MLA10") for rule_id in selected)


def test_unknown_selector_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="MLA8"):
        select_rules(registered_rules(), ["MLA8"], [])


def test_third_party_rules_are_discovered(
    run_cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    listing = run_cli("rules").stdout
    assert "MLA903" in listing
    assert "imaginary (missing)" in listing


def test_rule_with_missing_extra_is_skipped_with_install_hint(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    result = run_cli("scan", workspace.rf_joblib, "--data", workspace.holdout,
                     "--select", "MLA904")
    assert result.result("MLA904")["status"] == "skipped"
    assert result.result("MLA904")["reason"] == (
        "needs the 'imaginary' extra: pip install 'mlaudit[imaginary]'"
    )


def test_deselected_rule_modules_are_never_imported(workspace: Workspace, tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from mlaudit.cli import main\n"
        "try:\n"
        f"    main(['scan', {str(workspace.rf_joblib)!r}, '--select', 'MLA1', '-q',"
        f" '-o', {str(tmp_path / 'out')!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('mlaudit.rules.data' in sys.modules, 'mlaudit.rules.artifact' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert completed.stdout.split() == ["False", "True"]
