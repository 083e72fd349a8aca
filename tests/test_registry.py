from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlaudit.core.errors import UsageError
from mlaudit.engine.registry import extra_hint, registered_rules, select_rules
from mlaudit.rules.dependencies import KnownVulnerabilities
from tests.conftest import Runner, Workspace
from tests.plugin_rules import (
    PLUGIN_MODULE,
    NeedsMissingExtra,
    install_distribution,
    install_plugin,
)


def test_builtin_rules_are_registered_by_id() -> None:
    rules = registered_rules()
    ids = [rule.id for rule in rules]
    assert ids == sorted(ids)
    assert {"MLA101", "MLA102", "MLA702"} <= set(ids)
    mla101 = next(rule for rule in rules if rule.id == "MLA101")
    assert mla101.builtin
    assert mla101.origin.startswith("mlaudit ")


def test_selection_by_prefix_case_insensitive() -> None:
    available = registered_rules()
    selected = [r.id for r in select_rules(available, ["mla10"], ["MLA102"])]
    assert "MLA101" in selected
    assert "MLA102" not in selected
    assert all(rule_id.startswith("MLA10") for rule_id in selected)


def test_unknown_selector_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="MLA9"):
        select_rules(registered_rules(), ["MLA9"], [])


def test_a_plugin_prefix_selects_the_plugin_and_mla_only_mlaudit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    available = registered_rules()
    plugin = [r.id for r in select_rules(available, ["test"], [])]
    assert plugin == ["TEST901", "TEST902", "TEST903", "TEST904"]
    assert not any(r.builtin for r in select_rules(available, ["TEST"], []))
    assert all(r.builtin for r in select_rules(available, ["MLA"], []))
    assert [r.id for r in select_rules(available, ["TEST"], ["TEST90"])] == []


def test_third_party_rules_are_discovered(
    run_cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    listing = run_cli("rules").stdout
    assert "TEST903" in listing
    assert "imaginary (missing)" in listing


def test_rule_with_missing_extra_is_skipped_with_install_hint(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    result = run_cli("scan", workspace.rf_joblib, "--data", workspace.holdout,
                     "--select", "TEST904")
    assert result.result("TEST904")["status"] == "skipped"
    # The extra is the plugin's: installing mlaudit's extras would not bring it.
    assert result.result("TEST904")["reason"] == (
        "needs the 'imaginary' extra: pip install 'mlaudit-test-plugin[imaginary]'"
    )


def test_an_extra_is_installed_with_the_distribution_that_registered_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert extra_hint(KnownVulnerabilities) == "pip install 'mlaudit[deps]'"
    # Not registered (handed straight to the engine): taken for mlaudit's.
    assert extra_hint(NeedsMissingExtra) == "pip install 'mlaudit[imaginary]'"
    install_plugin(tmp_path / "plugin", monkeypatch)
    assert extra_hint(NeedsMissingExtra) == "pip install 'mlaudit-test-plugin[imaginary]'"


def test_one_id_from_two_distributions_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(tmp_path / "a", monkeypatch, "acme-mlaudit", "1.0",
                         ["ACME101 = acme_rules:Foo"])
    install_distribution(tmp_path / "b", monkeypatch, "other-pkg", "2.0",
                         ["ACME101 = other_rules:Bar"])
    with pytest.raises(UsageError) as raised:
        registered_rules()
    assert str(raised.value) == (
        "rule id ACME101 is registered by both acme-mlaudit 1.0 (acme_rules:Foo) "
        "and other-pkg 2.0 (other_rules:Bar)"
    )


def test_one_id_for_two_classes_of_one_distribution_is_a_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(tmp_path / "a", monkeypatch, "acme-mlaudit", "1.0",
                         ["ACME101 = acme_rules:Foo", "ACME101 = acme_rules:Bar"])
    with pytest.raises(UsageError, match=r"ACME101 is registered by both acme-mlaudit 1\.0"):
        registered_rules()


def test_the_same_entry_point_listed_twice_is_one_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Editable installs can list an entry point twice; that is one registration."""
    install_distribution(tmp_path / "a", monkeypatch, "acme-mlaudit", "1.0",
                         ["ACME101 = acme_rules:Foo", "ACME101 = acme_rules:Foo"])
    [acme] = [rule for rule in registered_rules() if rule.id == "ACME101"]
    assert acme.origin == "acme-mlaudit 1.0 (acme_rules:Foo)"


@pytest.mark.parametrize("rule_id", ["MLA901", "MLAX101"])
def test_a_plugin_may_not_use_the_mla_prefix(
    rule_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(tmp_path / "a", monkeypatch, "acme-mlaudit", "1.0",
                         [f"{rule_id} = acme_rules:Foo"])
    with pytest.raises(UsageError) as raised:
        registered_rules()
    assert str(raised.value) == (
        f"rule id {rule_id} is registered by acme-mlaudit 1.0 (acme_rules:Foo), but ids "
        "starting with MLA are reserved for mlaudit's own rules; give the plugin's rules a "
        "prefix of its own, such as ACME101"
    )


@pytest.mark.parametrize("name", ["acme101", "ACME1", "A101", "ACMEACMEA101", "ACME-101"])
def test_an_entry_point_that_is_no_rule_id_is_an_error(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(tmp_path / "a", monkeypatch, "acme-mlaudit", "1.0",
                         [f"{name} = acme_rules:Foo"])
    with pytest.raises(UsageError) as raised:
        registered_rules()
    assert str(raised.value) == (
        f"entry point {name!r} in group mlaudit.rules of acme-mlaudit 1.0 (acme_rules:Foo) "
        "is not a rule id: an id is 2 to 8 capital letters and three digits, such as ACME101"
    )


def test_a_broken_registry_is_exit_2_with_one_line(
    run_cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(tmp_path / "a", monkeypatch, "acme-mlaudit", "1.0",
                         ["MLA101 = acme_rules:Foo"])
    result = run_cli("rules")
    assert result.exit_code == 2
    assert result.stderr.startswith("mlaudit: error: rule id MLA101 is registered by acme")
    assert result.stderr.count("\n") == 1


def test_an_entry_point_naming_another_rule_is_refused_with_its_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "plugin", monkeypatch)
    install_distribution(tmp_path / "a", monkeypatch, "acme-mlaudit", "1.0",
                         [f"ACME101 = {PLUGIN_MODULE}:CrashingRule"])
    [acme] = [rule for rule in registered_rules() if rule.id == "ACME101"]
    with pytest.raises(UsageError) as raised:
        acme.load()
    assert str(raised.value) == (
        f"entry point ACME101 of acme-mlaudit 1.0 ({PLUGIN_MODULE}:CrashingRule) does not "
        "name a Rule class whose meta.id is ACME101"
    )


def test_deselected_rule_modules_are_never_imported(workspace: Workspace, tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from mlaudit.cli.main import main\n"
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
