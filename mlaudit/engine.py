"""Runs the selected rules in pipeline order, each isolated and within its time budget.

artifact rules -> load gate -> load -> behavioural rules -> static rules. A rule that raises
or overruns is ``error`` and the others go on; a rule without its inputs is ``skipped`` with
the reason, never silently absent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mlaudit import compat
from mlaudit.errors import ConfigError, ModelNotRunnable
from mlaudit.findings import Finding, JsonValue, RuleResult, Severity, Status
from mlaudit.gate import LoadDecision, decide
from mlaudit.loaders import loader_for
from mlaudit.model import LoadedModel
from mlaudit.registry import extra_installed
from mlaudit.rules.base import BudgetExceeded, Requirement, Rule, RuleContext, RuleSkipped, Stage
from mlaudit.scoring import rule_score
from mlaudit.subject import Subject

PROFILE_BUDGETS_S: Mapping[str, float] = {"quick": 60.0, "standard": 300.0, "thorough": 1800.0}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class EngineSettings:
    seed: int = 0
    profile: str = "standard"
    trust_model: bool = False
    extra_allowed: frozenset[str] = frozenset()
    rule_options: Mapping[str, Mapping[str, JsonValue]] = field(default_factory=dict)

    def budget_for(self, rule_id: str) -> float:
        override = self.rule_options.get(rule_id, {}).get("budget_s")
        if isinstance(override, (int, float)) and not isinstance(override, bool):
            return float(override)
        return PROFILE_BUDGETS_S[self.profile]


@dataclass(frozen=True)
class AuditRun:
    results: tuple[RuleResult, ...]
    load: LoadDecision | None
    model: LoadedModel | None


def run_audit(
    subject: Subject,
    rules: Sequence[type[Rule]],
    settings: EngineSettings,
    progress: Progress = lambda _: None,
) -> AuditRun:
    by_stage = {stage: [r for r in rules if r.meta.stage is stage] for stage in Stage}
    results = [
        _run_rule(r, subject, None, None, settings=settings, progress=progress)
        for r in by_stage[Stage.ARTIFACT]
    ]
    model: LoadedModel | None = None
    decision: LoadDecision | None = None
    not_runnable: str | None = None
    # Only rules that query the model make it worth loading (MLA401 reads the data alone).
    if any(Requirement.MODEL in r.meta.requires for r in by_stage[Stage.BEHAVIOURAL]):
        decision = decide(subject.model, results, trust_model=settings.trust_model)
        loader = loader_for(subject.model.format)
        if decision.may_load and loader is not None:
            progress(f"loading {subject.model.format.value} model {subject.model.reference}")
            try:
                model = loader(
                    subject.model,
                    trusted=settings.trust_model,
                    extra_allowed=settings.extra_allowed,
                )
            except ModelNotRunnable as reason:
                not_runnable = str(reason)
            else:
                for dataset in subject.datasets:
                    compat.require_usable(dataset, model)
        else:
            progress(f"load gate blocked the model: {decision.summary()}")
    for stage in (Stage.BEHAVIOURAL, Stage.STATIC):
        results.extend(
            _run_rule(
                r, subject, model, decision, settings=settings, progress=progress,
                not_runnable=not_runnable,
            )
            for r in by_stage[stage]
        )
    return AuditRun(tuple(results), decision, model)


def _unmet_requirement(
    rule: type[Rule],
    subject: Subject,
    model: LoadedModel | None,
    decision: LoadDecision | None,
    not_runnable: str | None,
) -> str | None:
    meta = rule.meta
    if not extra_installed(rule):
        return f"needs the '{meta.extra}' extra: pip install 'mlaudit[{meta.extra}]'"
    if meta.formats is not None and subject.model.format not in meta.formats:
        applies = ", ".join(sorted(f.value for f in meta.formats))
        return f"applies to {applies} models; this model is {subject.model.format.value}"
    checks: list[tuple[Requirement, bool, str]] = [
        (Requirement.ARTIFACT, subject.model.path is not None, "no model file to read"),
        (Requirement.DATA, subject.sample is not None, "no data: give --data, --train, --holdout"),
        (Requirement.LABELS, subject.target is not None, "no labels: give --target"),
        (
            Requirement.TRAIN_HOLDOUT,
            subject.dataset("train") is not None and subject.dataset("holdout") is not None,
            "needs both --train (members) and --holdout (non-members)",
        ),
        (Requirement.SOURCE, subject.source is not None, "no source tree: give --source"),
        (Requirement.REQUIREMENTS, bool(subject.requirements), "no --requirements given"),
        (
            Requirement.DEPENDENCIES,
            bool(subject.requirements) or subject.environment,
            "no dependencies: give --requirements or --env",
        ),
    ]
    for requirement, met, reason in checks:
        if requirement in meta.requires and not met:
            return reason
    if Requirement.MODEL in meta.requires and model is None:
        if decision is not None and not decision.may_load:
            return f"model not loaded: blocked by {decision.summary()}"
        if not_runnable is not None:
            return not_runnable
        return (
            f"{subject.model.format.value} models are scanned but not run by mlaudit; "
            "give the model as module:callable to audit its behaviour"
        )
    return None


def _run_rule(
    rule: type[Rule],
    subject: Subject,
    model: LoadedModel | None,
    decision: LoadDecision | None,
    *,
    settings: EngineSettings,
    progress: Progress,
    not_runnable: str | None = None,
) -> RuleResult:
    meta = rule.meta
    unmet = _unmet_requirement(rule, subject, model, decision, not_runnable)
    if unmet is not None:
        progress(f"{meta.id} skipped: {unmet}")
        return RuleResult(meta.id, meta.name, meta.family.value, Status.SKIPPED, None, unmet)
    options: dict[str, JsonValue] = {option.name: option.default for option in meta.options}
    options.update(
        {k: v for k, v in settings.rule_options.get(meta.id, {}).items() if k != "budget_s"}
    )
    budget = settings.budget_for(meta.id)
    counted = model.counting() if model is not None else None
    ctx = RuleContext(
        meta, subject, counted, options, settings.seed, settings.profile, time.monotonic() + budget,
        progress=lambda message: progress(f"{meta.id} {message}"),
    )
    progress(f"{meta.id} {meta.name}")
    started = time.perf_counter()
    findings, failure = _call_with_budget(rule(), ctx, budget)
    duration = time.perf_counter() - started
    queries = counted.queries if counted is not None else None
    base = (meta.id, meta.name, meta.family.value)
    if isinstance(failure, ConfigError):
        raise failure  # the configuration is wrong, not the model: exit 2, no report
    if isinstance(failure, RuleSkipped):
        return RuleResult(*base, Status.SKIPPED, None, str(failure), duration_s=duration)
    if failure is not None:
        reason = str(failure) if isinstance(failure, BudgetExceeded) else (
            f"{type(failure).__name__}: {failure}"
        )
        progress(f"{meta.id} error: {reason}")
        # An abandoned rule may still be writing its metrics: report none rather than a torn set.
        metrics = {} if isinstance(failure, BudgetExceeded) else dict(ctx.metrics)
        return RuleResult(
            *base, Status.ERROR, None, reason, metrics, duration_s=duration, queries=queries
        )
    ordered = tuple(sorted(findings, key=lambda f: (-f.severity.rank, f.fingerprint)))
    failed = any(f.severity >= Severity.LOW for f in ordered)
    return RuleResult(
        *base,
        Status.FAILED if failed else Status.PASSED,
        rule_score(ordered),
        None,
        dict(sorted(ctx.metrics.items())),
        ordered,
        duration,
        queries,
    )


def _call_with_budget(
    rule: Rule, ctx: RuleContext, budget: float
) -> tuple[list[Finding], BaseException | None]:
    """Run ``rule.check`` in a worker thread and stop waiting when the budget is spent.

    Python cannot kill a thread: an overrunning rule is abandoned (daemon thread) and reported
    as ``error``; rules with long loops also call ``ctx.check_budget()`` so they stop by
    themselves.
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["findings"] = list(rule.check(ctx))
        except BaseException as error:  # isolate every failure, including SystemExit
            outcome["error"] = error

    worker = threading.Thread(target=target, name=f"rule-{ctx.meta.id}", daemon=True)
    worker.start()
    worker.join(budget)
    if worker.is_alive():
        return [], BudgetExceeded(f"{ctx.meta.id} ran past its time budget of {budget:g} s")
    error = outcome.get("error")
    if isinstance(error, BaseException):
        return [], error
    findings = outcome.get("findings", [])
    assert isinstance(findings, list)
    return findings, None
