"""Third-party rules for the tests, installed as a real distribution with entry points.

``install_plugin`` writes a ``.dist-info`` folder onto ``sys.path``, which is exactly how pip
installs a plugin, so discovery goes through ``importlib.metadata`` like it does for users.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlaudit.findings import Finding, Location, Severity
from mlaudit.rules.base import Family, Requirement, Rule, RuleContext, RuleMeta, RuleOption

PLUGIN_MODULE = "mlaudit_test_plugin"


class CrashingRule(Rule):
    """A rule that raises.

    **What it checks**: nothing. **Why it matters**: tests isolation. **How to fix**: n/a.
    **Options**: none.
    """

    meta = RuleMeta(
        id="MLA901", name="Crashes", family=Family.DATA_QUALITY, severity=Severity.LOW,
        requires=frozenset({Requirement.ARTIFACT}),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        raise RuntimeError("boom")


class SlowRule(Rule):
    """A rule that overruns any small budget.

    **What it checks**: nothing. **Why it matters**: tests budgets. **How to fix**: n/a.
    **Options**: ``sleep_s``.
    """

    meta = RuleMeta(
        id="MLA902", name="Sleeps", family=Family.DATA_QUALITY, severity=Severity.LOW,
        requires=frozenset({Requirement.ARTIFACT}),
        options=(RuleOption("sleep_s", 30.0, "how long to sleep"),),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        sleep_s = ctx.options["sleep_s"]
        assert isinstance(sleep_s, float)
        time.sleep(sleep_s)
        yield ctx.finding(key="slept", title="Slept", message="slept",
                          location=Location("model"))


class OptionEchoRule(Rule):
    """A rule that reports its option and the random draw it got.

    **What it checks**: nothing. **Why it matters**: tests options and seeding.
    **How to fix**: n/a. **Options**: ``label``.
    """

    meta = RuleMeta(
        id="MLA903", name="Echoes", family=Family.DATA_QUALITY, severity=Severity.INFO,
        requires=frozenset({Requirement.ARTIFACT}),
        options=(RuleOption("label", "default", "echoed back"),),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        ctx.metrics["label"] = ctx.options["label"]
        ctx.metrics["draw"] = float(ctx.rng().random())
        return iter(())


class NeedsMissingExtra(Rule):
    """A rule whose extra is not installed.

    **What it checks**: nothing. **Why it matters**: tests skipping. **How to fix**: n/a.
    **Options**: none.
    """

    meta = RuleMeta(
        id="MLA904", name="Needs an extra", family=Family.ROBUSTNESS, severity=Severity.LOW,
        requires=frozenset({Requirement.MODEL}), extra="imaginary",
        extra_modules=("mlaudit_imaginary_dependency",),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        raise AssertionError("must never run without its extra")


_ENTRY_POINTS = """[mlaudit.rules]
MLA901 = mlaudit_test_plugin:CrashingRule
MLA902 = mlaudit_test_plugin:SlowRule
MLA903 = mlaudit_test_plugin:OptionEchoRule
MLA904 = mlaudit_test_plugin:NeedsMissingExtra
"""


def install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist_info = root / "mlaudit_test_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mlaudit-test-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(_ENTRY_POINTS)
    (root / f"{PLUGIN_MODULE}.py").write_text(
        "from tests.plugin_rules import CrashingRule, NeedsMissingExtra, OptionEchoRule, SlowRule\n"
        "__all__ = ['CrashingRule', 'NeedsMissingExtra', 'OptionEchoRule', 'SlowRule']\n"
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, PLUGIN_MODULE, raising=False)
