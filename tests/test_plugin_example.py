"""The example plugin (examples/plugin) installed as a user installs it, and mlaudit.testing.

pip builds the example with the project's own setuptools (offline: no build isolation, no
index) and installs it into a throwaway folder (``--target``), so the project's virtual
environment never changes; mlaudit runs in subprocesses with that folder on PYTHONPATH and
finds the rule through the installed metadata, exactly as after ``pip install``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlaudit.core.errors import UsageError
from mlaudit.core.findings import Family, Finding, Severity
from mlaudit.engine.registry import registered_rules
from mlaudit.rules.base import Requirement, Rule, RuleContext, RuleMeta, RuleOption
from mlaudit.testing import RuleDidNotRun, assert_rule_contract, check_rule, run_rule
from tests.plugin_rules import CrashingRule, OptionEchoRule, write_distribution
from tests.test_report import validate

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugin"
EXAMPLE_ORIGIN = "mlaudit-example-plugin 0.1.0 (mlaudit_example_plugin:ModelCardRule)"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the installed plugin's folder, a copy of the example's sources with its fixtures)."""
    source = tmp_path_factory.mktemp("example-source")
    # pip builds in the source tree (build/, *.egg-info): a copy keeps the checkout clean.
    shutil.copytree(
        EXAMPLE, source, dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*cache"),
    )
    site = tmp_path_factory.mktemp("example-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(source)],
        check=True, capture_output=True,
    )
    return site, source


def _python(
    *args: str | Path, path: list[Path], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` with ``path`` ahead of PYTHONPATH and no MLAUDIT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAUDIT_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [*map(str, path), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
        timeout=300,
    )


def _scan(example: tuple[Path, Path], fixture: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    """``mlaudit scan`` of one of the example's fixtures with the plugin's rules only: the
    exit code and the report."""
    site, source = example
    completed = _python(
        "-m", "mlaudit", "scan", source / "tests" / "fixtures" / fixture, "--select", "EXA",
        "--fail-on", "medium", "-q", "-o", tmp_path / "out", path=[site], cwd=tmp_path,
    )
    assert completed.returncode in (0, 1), completed.stderr
    report: dict[str, Any] = json.loads((tmp_path / "out" / "report.json").read_text())
    return completed.returncode, report


@pytest.mark.slow
def test_the_installed_plugin_is_listed_and_explained(
    example: tuple[Path, Path], tmp_path: Path
) -> None:
    site, _ = example
    listing = _python("-m", "mlaudit", "rules", path=[site], cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    [line] = [line for line in listing.stdout.splitlines() if line.startswith("EXA101")]
    assert "Model card missing or incomplete" in line
    assert "MLA101" in listing.stdout
    explained = _python("-m", "mlaudit", "explain", "exa101", path=[site], cwd=tmp_path)
    assert explained.stdout.startswith("# EXA101: Model card missing or incomplete\n")
    assert "## How to fix" in explained.stdout


@pytest.mark.slow
def test_the_plugin_fires_and_fails_the_gate_on_a_model_without_a_card(
    example: tuple[Path, Path], tmp_path: Path
) -> None:
    exit_code, report = _scan(example, "undocumented", tmp_path)
    assert exit_code == 1
    [result] = report["results"]
    assert result["status"] == "failed"
    [finding] = result["findings"]
    assert finding["title"] == "No model card"
    assert finding["severity"] == "medium"


@pytest.mark.slow
def test_the_plugin_stays_quiet_on_a_documented_model(
    example: tuple[Path, Path], tmp_path: Path
) -> None:
    exit_code, report = _scan(example, "documented", tmp_path)
    assert exit_code == 0
    [result] = report["results"]
    assert result["status"] == "passed"
    assert result["findings"] == []
    assert result["metrics"]["card"] == "README.md"


@pytest.mark.slow
def test_a_report_with_a_plugins_rule_is_valid_and_names_its_provider(
    example: tuple[Path, Path], tmp_path: Path
) -> None:
    _, report = _scan(example, "undocumented", tmp_path)
    validate(report)
    assert report["tool"]["rules"] == {"EXA101": "mlaudit-example-plugin 0.1.0"}


@pytest.mark.slow
def test_the_examples_own_tests_pass(example: tuple[Path, Path]) -> None:
    site, source = example
    completed = _python(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", path=[site], cwd=source
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.slow
def test_a_second_distribution_claiming_the_plugins_id_is_exit_2(
    example: tuple[Path, Path], tmp_path: Path
) -> None:
    site, _ = example
    rival = write_distribution(tmp_path / "rival", "acme-rules", "2.0", ["EXA101 = acme:Other"])
    completed = _python("-m", "mlaudit", "rules", path=[site, rival], cwd=tmp_path)
    assert completed.returncode == 2
    assert completed.stderr == (
        f"mlaudit: error: rule id EXA101 is registered by both acme-rules 2.0 (acme:Other) "
        f"and {EXAMPLE_ORIGIN}\n"
    )


@pytest.mark.slow
def test_a_plugin_registering_an_mla_id_stops_the_scan(tmp_path: Path) -> None:
    foreign = write_distribution(tmp_path / "foreign", "acme-rules", "2.0",
                                 ["MLA950 = acme:Other"])
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps({"coef": [1.0]}))
    completed = _python("-m", "mlaudit", "scan", model, path=[foreign], cwd=tmp_path)
    assert completed.returncode == 2
    assert completed.stderr.startswith(
        "mlaudit: error: rule id MLA950 is registered by acme-rules 2.0 (acme:Other), but ids "
        "starting with MLA are reserved for mlaudit's own rules"
    )
    assert not (tmp_path / "mlaudit-report").exists()


# mlaudit.testing itself: the helpers a plugin's tests rely on must fail loudly, never pass
# vacuously.


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"coef": [0.5, -1.25]}))
    return path


def test_mlaudits_own_rules_meet_the_contract() -> None:
    for registered in registered_rules():
        if registered.builtin:
            assert_rule_contract(registered.load())


def test_the_contract_lists_every_problem() -> None:
    class Careless(Rule):
        """Checks things.

        **What it checks**: something.

        **How to fix**: something else.

        **Options**: none.
        """

        meta = RuleMeta(
            id="MLA999", name="", family=Family.SERVING, severity=Severity.LOW,
            requires=frozenset({Requirement.ARTIFACT}),
            options=(RuleOption("limit", 1.0, ""), RuleOption("budget_s", 5.0, "seconds")),
        )

        def check(self, ctx: RuleContext) -> Iterator[Finding]:
            return iter(())

    with pytest.raises(AssertionError) as raised:
        assert_rule_contract(Careless)
    message = str(raised.value)
    assert message.startswith("MLA999 breaks the rule contract:\n- ")
    for problem in (
        "id MLA999 uses the prefix MLA, reserved for mlaudit",
        "name is empty",
        "the docstring's sections are ['What it checks', 'How to fix', 'Options']",
        "option limit has no help text",
        "option budget_s is the engine's own",
    ):
        assert problem in message


def test_the_contract_checks_that_options_are_documented() -> None:
    class Undocumented(OptionEchoRule):
        """Echoes.

        **What it checks**: nothing.

        **Why it matters**: nothing.

        **How to fix**: nothing.

        **Options**: none.
        """

    with pytest.raises(AssertionError, match="option label is not documented as ``label``"):
        assert_rule_contract(Undocumented)


def test_check_rule_refuses_a_rule_that_did_not_run(model_file: Path) -> None:
    with pytest.raises(RuleDidNotRun, match=r"TEST901 did not run \(error\): RuntimeError: boom"):
        check_rule(CrashingRule, model_file)
    # A module:callable model has no file: the artifact rule is skipped, never run.
    with pytest.raises(RuleDidNotRun, match=r"TEST901 did not run \(skipped\): no model file"):
        check_rule(CrashingRule, "churn_service:predict")


def test_run_rule_passes_options_and_seed_through_the_engine(model_file: Path) -> None:
    first = run_rule(OptionEchoRule, model_file, options={"label": "given"}, seed=3)
    again = run_rule(OptionEchoRule, model_file, seed=3)
    assert first.metrics["label"] == "given"
    assert again.metrics["label"] == "default"
    assert first.metrics["draw"] == again.metrics["draw"]


def test_a_missing_model_file_is_mlaudits_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        check_rule(OptionEchoRule, tmp_path / "absent.pkl")
