"""Third-party rules for the tests, installed as real distributions with entry points.

``write_distribution`` writes a ``.dist-info`` folder, which is exactly how pip installs a
plugin, and ``install_distribution`` puts it on ``sys.path``: discovery goes through
``importlib.metadata`` like it does for users. The test plugin's rules use the prefix
``TEST``: only mlaudit itself may register ``MLA`` ids.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from mlaudit.core.findings import Family, Finding, Location, Severity
from mlaudit.rules.base import Requirement, Rule, RuleContext, RuleMeta, RuleOption

PLUGIN_MODULE = "mlaudit_test_plugin"


class CrashingRule(Rule):
    """A rule that raises.

    **What it checks**: nothing.

    **Why it matters**: tests isolation.

    **How to fix**: n/a.

    **Options**: none.
    """

    meta = RuleMeta(
        id="TEST901", name="Crashes", family=Family.DATA_QUALITY, severity=Severity.LOW,
        requires=frozenset({Requirement.ARTIFACT}),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        raise RuntimeError("boom")


class SlowRule(Rule):
    """A rule that overruns any small budget.

    **What it checks**: nothing.

    **Why it matters**: tests budgets.

    **How to fix**: n/a.

    **Options**: ``sleep_s``, how long to sleep.
    """

    meta = RuleMeta(
        id="TEST902", name="Sleeps", family=Family.DATA_QUALITY, severity=Severity.LOW,
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

    **What it checks**: nothing.

    **Why it matters**: tests options and seeding.

    **How to fix**: n/a.

    **Options**: ``label``, echoed back as a metric.
    """

    meta = RuleMeta(
        id="TEST903", name="Echoes", family=Family.DATA_QUALITY, severity=Severity.INFO,
        requires=frozenset({Requirement.ARTIFACT}),
        options=(RuleOption("label", "default", "echoed back"),),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        ctx.metrics["label"] = ctx.options["label"]
        ctx.metrics["draw"] = float(ctx.rng().random())
        return iter(())


class NeedsMissingExtra(Rule):
    """A rule whose extra is not installed.

    **What it checks**: nothing.

    **Why it matters**: tests skipping.

    **How to fix**: n/a.

    **Options**: none.
    """

    meta = RuleMeta(
        id="TEST904", name="Needs an extra", family=Family.ROBUSTNESS, severity=Severity.LOW,
        requires=frozenset({Requirement.MODEL}), extra="imaginary",
        extra_modules=("mlaudit_imaginary_dependency",),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        raise AssertionError("must never run without its extra")


def write_distribution(
    root: Path,
    name: str,
    version: str,
    entry_points: Sequence[str],
    modules: Mapping[str, str] | None = None,
) -> Path:
    """Write distribution ``name`` into ``root`` as pip would: metadata, ``entry_points`` in
    the ``mlaudit.rules`` group (``ID = module:Class`` lines, repeats kept) and ``modules``
    (name to source). Returns ``root``, the folder to put on ``sys.path``."""
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[mlaudit.rules]\n" + "".join(f"{line}\n" for line in entry_points)
    )
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(source)
    return root


def install_distribution(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    version: str,
    entry_points: Sequence[str],
    modules: Mapping[str, str] | None = None,
) -> None:
    """:func:`write_distribution`, put on this process's ``sys.path`` for the test's duration."""
    write_distribution(root, name, version, entry_points, modules)
    for module in modules or {}:
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.syspath_prepend(str(root))


def install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test plugin: TEST901 crashes, TEST902 sleeps, TEST903 echoes, TEST904 needs an extra."""
    install_distribution(
        root, monkeypatch, "mlaudit-test-plugin", "1.0",
        [
            f"TEST901 = {PLUGIN_MODULE}:CrashingRule",
            f"TEST902 = {PLUGIN_MODULE}:SlowRule",
            f"TEST903 = {PLUGIN_MODULE}:OptionEchoRule",
            f"TEST904 = {PLUGIN_MODULE}:NeedsMissingExtra",
        ],
        {PLUGIN_MODULE: (
            "from tests.plugin_rules import (\n"
            "    CrashingRule, NeedsMissingExtra, OptionEchoRule, SlowRule,\n"
            ")\n"
            "__all__ = ['CrashingRule', 'NeedsMissingExtra', 'OptionEchoRule', 'SlowRule']\n"
        )},
    )
