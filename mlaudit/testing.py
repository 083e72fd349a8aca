"""Helpers for a rule's tests: run it through mlaudit's real engine, and check its contract.

Written for plugin authors, usable by mlaudit's own tests::

    from mlaudit.testing import assert_rule_contract, check_rule, make_subject

    def test_contract() -> None:
        assert_rule_contract(ModelCardRule)

    def test_fires_without_a_card() -> None:
        [finding] = check_rule(ModelCardRule, FIXTURES / "undocumented")
        assert finding.severity is Severity.MEDIUM

    def test_quiet_on_good_data() -> None:
        subject = make_subject(FIXTURES / "model.joblib", data=FIXTURES / "good.csv", target="y")
        assert check_rule(DriftRule, subject) == []

A rule runs exactly as in ``mlaudit scan``: requirements decide whether it is skipped, options
are merged over its defaults, the model is loaded behind the load gate in an isolated worker.
No test framework is imported: a failed expectation is an :class:`AssertionError`, which
pytest and unittest both report.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlaudit.core.findings import RULE_ID, Family, Finding, JsonValue, RuleResult, Severity, Status
from mlaudit.engine.registry import RESERVED_PREFIX
from mlaudit.engine.run import BUDGET_OPTION, EngineSettings, run_audit
from mlaudit.reports.rule_pages import SECTION_PATTERN, SECTIONS
from mlaudit.rules.base import Requirement, Rule, RuleMeta
from mlaudit.scanners.sniff import ModelFormat
from mlaudit.subject.build import Subject, build_subject

__all__ = ["RuleDidNotRun", "assert_rule_contract", "check_rule", "make_subject", "run_rule"]


class RuleDidNotRun(AssertionError):
    """The rule was skipped or in error, so an assertion on its findings would prove nothing
    (an empty list from a rule that never ran is not a rule staying quiet)."""


def make_subject(
    model: str | Path,
    *,
    data: Path | None = None,
    train: Path | None = None,
    holdout: Path | None = None,
    target: str | None = None,
    source: Path | None = None,
    requirements: Sequence[Path] = (),
    environment: bool = False,
) -> Subject:
    """What ``mlaudit scan MODEL --data ... --source ...`` audits: files hashed and sniffed,
    nothing loaded. ``model`` is a file, a model folder or ``module:callable``."""
    return build_subject(
        str(model),
        data=data,
        train=train,
        holdout=holdout,
        target=target,
        source=source,
        requirements=requirements,
        environment=environment,
    )


def run_rule(
    rule: type[Rule],
    subject: Subject | str | Path,
    *,
    options: Mapping[str, JsonValue] | None = None,
    seed: int = 0,
    profile: str = "quick",
) -> RuleResult:
    """The result of ``rule`` alone on ``subject`` (a model path: the model and no other input),
    whatever its status: for tests of skipping, errors and metrics.

    ``options`` are the rule's ``[tool.mlaudit.rules.ID]`` table, validated by the engine as in
    a scan (an unknown option or a value the rule does not accept is a
    :class:`~mlaudit.core.errors.ConfigError`); the quick profile keeps behavioural rules' sample
    sizes and budgets small, as in mlaudit's own tests.
    """
    audited = subject if isinstance(subject, Subject) else make_subject(subject)
    settings = EngineSettings(
        seed=seed, profile=profile, rule_options={rule.meta.id: dict(options or {})}
    )
    [result] = run_audit(audited, [rule], settings).results
    return result


def check_rule(
    rule: type[Rule],
    subject: Subject | str | Path,
    *,
    options: Mapping[str, JsonValue] | None = None,
    seed: int = 0,
    profile: str = "quick",
) -> list[Finding]:
    """The findings of ``rule`` on ``subject``, most severe first, as the report lists them.

    Raises :class:`RuleDidNotRun` when the rule was skipped or in error, with the reason.
    """
    result = run_rule(rule, subject, options=options, seed=seed, profile=profile)
    if result.status in (Status.SKIPPED, Status.ERROR):
        raise RuleDidNotRun(f"{rule.meta.id} did not run ({result.status.value}): {result.reason}")
    return list(result.findings)


def assert_rule_contract(rule: type[Rule]) -> None:
    """Raise :class:`AssertionError` listing every way ``rule`` breaks the rule contract.

    The contract: a concrete :class:`Rule` subclass; a ``RuleMeta`` with a valid id (a plugin's
    prefix is its own, never ``MLA``), a name, and a family, severity, requirements and model
    formats of mlaudit's enums; a docstring with a summary and the sections **What it checks**,
    **Why it matters**, **How to fix** and **Options**, once each and in that order, the
    Options section naming every option as ``name``; options with unique identifier names and
    a help text. (An option's default is checked against its declaration when the rule's
    class is created.)
    """
    if not (isinstance(rule, type) and issubclass(rule, Rule)):
        raise AssertionError(f"{rule!r} is not a subclass of mlaudit.rules.base.Rule")
    meta = getattr(rule, "meta", None)
    if not isinstance(meta, RuleMeta):
        raise AssertionError(f"{rule.__qualname__}.meta is not a RuleMeta")
    problems = [
        *_meta_problems(rule, meta),
        *_docstring_problems(rule, meta),
        *_option_problems(meta),
    ]
    if inspect.isabstract(rule):
        problems.append("check() is not implemented")
    if problems:
        raise AssertionError(
            f"{meta.id or rule.__qualname__} breaks the rule contract:\n- " + "\n- ".join(problems)
        )


def _meta_problems(rule: type[Rule], meta: RuleMeta) -> list[str]:
    problems = []
    if not RULE_ID.fullmatch(meta.id):
        problems.append(
            f"id {meta.id!r} is not 2 to 8 capital letters and three digits (such as ACME101)"
        )
    # Only mlaudit's own package may use its prefix; the registry refuses it from any other
    # distribution, so a plugin would fail at install time rather than in its tests.
    if meta.id.startswith(RESERVED_PREFIX) and rule.__module__.split(".")[0] != "mlaudit":
        problems.append(f"id {meta.id} uses the prefix {RESERVED_PREFIX}, reserved for mlaudit")
    if not meta.name.strip():
        problems.append("name is empty")
    if not isinstance(meta.family, Family):
        problems.append(f"family {meta.family!r} is not a mlaudit.rules.base.Family")
    if not isinstance(meta.severity, Severity):
        problems.append(f"severity {meta.severity!r} is not a mlaudit.core.findings.Severity")
    if not isinstance(meta.requires, frozenset) or not all(
        isinstance(r, Requirement) for r in meta.requires
    ):
        problems.append("requires is not a frozenset of mlaudit.rules.base.Requirement")
    if meta.formats is not None and not all(isinstance(f, ModelFormat) for f in meta.formats):
        problems.append("formats is not None or a frozenset of mlaudit.scanners.sniff.ModelFormat")
    if meta.extra_modules and not meta.extra:
        problems.append("extra_modules is set without the extra that installs them")
    return problems


def _docstring_problems(rule: type[Rule], meta: RuleMeta) -> list[str]:
    doc = inspect.getdoc(rule) or ""
    summary, _, body = doc.partition("\n\n")
    if not summary.strip() or SECTION_PATTERN.match(summary):
        return ["the docstring does not start with a one-paragraph summary"]
    found = SECTION_PATTERN.findall(body)
    if found != list(SECTIONS):
        wanted = ", ".join(f"**{s}**:" for s in SECTIONS)
        return [f"the docstring's sections are {found}; it needs {wanted} once each, in order"]
    texts = dict(zip(SECTIONS, SECTION_PATTERN.split(body)[2::2], strict=True))
    problems = [f"section {name} is empty" for name, text in texts.items() if not text.strip()]
    problems += [
        f"option {option.name} is not documented as ``{option.name}`` under **Options**"
        for option in meta.options
        if f"``{option.name}``" not in texts["Options"]
    ]
    return problems


def _option_problems(meta: RuleMeta) -> list[str]:
    problems = []
    names = [option.name for option in meta.options]
    problems += [f"option {name} is declared twice" for name in sorted(set(names))
                 if names.count(name) > 1]
    for option in meta.options:
        if not option.name.isidentifier():
            problems.append(f"option name {option.name!r} is not an identifier")
        if option.name == BUDGET_OPTION.name:
            problems.append(f"option {option.name} is the engine's own (a per-rule time budget)")
        if not option.help.strip():
            problems.append(f"option {option.name} has no help text")
    return problems
