"""Runs the selected rules in pipeline order, each isolated and within its time budget.

artifact rules -> load gate -> model worker (load, the rules that query the model) -> the other
behavioural rules -> static rules. A rule that raises or overruns is ``error`` and the others go
on; a rule without its inputs is ``skipped`` with the reason, never silently absent. The model
is loaded and queried only in an isolated worker process (:mod:`mlaudit.isolation`), unless the
isolation mode is ``none``. A model the caller already holds (``run_audit(..., loaded=...)``)
has no file for the artifact rules or the load gate, and is queried where it already lives.

Before any of that, every selected rule's options are validated against its declaration
(:func:`configure`): a bad option stops the run with a configuration error (exit 2) naming
the rule, the option and what it accepts. The run's cache (:mod:`mlaudit.core.runcache`) lets
rules share expensive work; it lives where the work happens, so the model worker has its
own, seeded with what the parent had computed before it forked.
"""

from __future__ import annotations

import enum
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mlaudit.core.delegation import Delegate
from mlaudit.core.errors import ConfigError, ModelNotRunnable, UsageError
from mlaudit.core.findings import Finding, JsonValue, RuleResult, Severity, Status
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.distributed import Cluster
from mlaudit.engine.registry import extra_hint, extra_installed, registered_rules, select_rules
from mlaudit.isolation import ISOLATION_MODES, IsolationRecord
from mlaudit.isolation.transport import ModelInfo
from mlaudit.isolation.worker import WorkerJob, address_space_limit, parent_delegate, run_job
from mlaudit.loaders import Loader, loader_for
from mlaudit.loaders.load_gate import LoadDecision, LoadStatus, decide
from mlaudit.rules.base import (
    BudgetExceeded,
    OptionKind,
    OptionValueError,
    Requirement,
    Rule,
    RuleContext,
    RuleOption,
    RuleSkipped,
    Stage,
)
from mlaudit.scanners.sniff import ModelFormat
from mlaudit.serving.resources import measure_load
from mlaudit.subject import compat
from mlaudit.subject.build import Subject
from mlaudit.subject.model_info import LoadedModel
from mlaudit.verdict.scoring import rule_score

PROFILE_BUDGETS_S: Mapping[str, float] = {"quick": 60.0, "standard": 300.0, "thorough": 1800.0}
Progress = Callable[[str], None]
Call = Callable[[Rule, RuleContext, float], tuple[list[Finding], BaseException | None]]
# The engine's own per-rule option: every rule has it and no rule declares it.
BUDGET_OPTION = RuleOption(
    "budget_s",
    None,
    "the rule's time budget in seconds (null: the profile's)",
    kind=OptionKind.NUMBER,
    minimum=0,
    exclusive_minimum=True,
    nullable=True,
)
_IN_PROCESS_NOTE = (
    "isolation none: the model was loaded and queried inside mlaudit's own process, with the "
    "user's full rights (network, files, programs)"
)
NO_FILE_REASON = "the model was given in memory: there is no file to scan"
IN_MEMORY_LOAD_REASON = "given in memory by the caller, who vouches for it"


@dataclass(frozen=True)
class EngineSettings:
    seed: int = 0
    profile: str = "standard"
    trust_model: bool = False
    extra_allowed: frozenset[str] = frozenset()
    rule_options: Mapping[str, Mapping[str, JsonValue]] = field(default_factory=dict)
    isolation: str = "auto"  # auto | strict | none (mlaudit.isolation.ISOLATION_MODES)
    load_options: LoadOptions = NO_LOAD_OPTIONS

    def __post_init__(self) -> None:
        if self.profile not in PROFILE_BUDGETS_S:
            raise ConfigError(
                f"profile must be one of {', '.join(PROFILE_BUDGETS_S)}, not {self.profile!r}"
            )
        if self.isolation not in ISOLATION_MODES:
            raise ConfigError(
                f"isolation must be one of {', '.join(ISOLATION_MODES)}, not {self.isolation!r}"
            )


@dataclass(frozen=True)
class ConfiguredRule:
    """A selected rule with its options validated: its defaults merged with the user's."""

    rule: type[Rule]
    options: Mapping[str, JsonValue]
    budget_s: float


class ModelSource(enum.Enum):
    """How the model reached the audit (the report's ``subject.model.source``)."""

    FILE = "file"  # a model file or folder, read and scanned
    ENTRY_POINT = "entry-point"  # ``module:callable``, imported by the loader
    IN_MEMORY = "in-memory"  # an object the caller already held (``run_audit(loaded=...)``)


@dataclass(frozen=True)
class AuditRun:
    results: tuple[RuleResult, ...]
    load: LoadDecision | None
    model: ModelInfo | None
    isolation: IsolationRecord
    source: ModelSource
    # The qualified class name of a model given in memory: it has no file or hash to name it.
    model_type: str | None = None


@dataclass
class _QueryProbe:
    """Why the loaded model raised when queried with a few rows of the data (None: it did
    not). Set where the model is loaded; the rules that query it are then ``error`` with
    that reason (an audit that could not query the model fails the gate), the rest run."""

    failure: str | None = None


@dataclass
class _ModelStage:
    """What loading the model produced: the model in-process (isolation none), what the worker
    said about it, results the worker sent, or why the model could not run."""

    decision: LoadDecision | None = None
    model: LoadedModel | None = None
    info: ModelInfo | None = None
    worker_results: dict[str, RuleResult] = field(default_factory=dict)
    not_runnable: str | None = None
    isolation: IsolationRecord | None = None
    probe: _QueryProbe = field(default_factory=_QueryProbe)


def load_rules(select: Iterable[str] = (), ignore: Iterable[str] = ()) -> list[type[Rule]]:
    """The installed rules matching any ``select`` prefix (all when empty) and no ``ignore``
    prefix, imported; a usage error when a prefix matches nothing or no rule is left."""
    chosen = select_rules(registered_rules(), select, ignore)
    if not chosen:
        raise UsageError("no rules selected: --select and --ignore exclude every rule")
    return [registered.load() for registered in chosen]


def configure(rules: Sequence[type[Rule]], settings: EngineSettings) -> dict[str, ConfiguredRule]:
    """Every rule's options, validated against its declaration, by rule id.

    The user's ``[tool.mlaudit.rules.ID]`` tables (``settings.rule_options``) are merged over
    the declared defaults and each value is checked once, here, before any rule runs. Raises
    :class:`ConfigError` (exit 2, no report) naming the rule, the option and what it accepts
    for an unknown option, a value of the wrong kind or outside its range, a bad ``budget_s``,
    or a table for a rule that is not installed. Tables of installed rules that were not
    selected are not read: their rules are never imported.
    """
    selected = {rule.meta.id: rule for rule in rules}
    stray = sorted(set(settings.rule_options) - set(selected))
    if stray:
        installed = {registered.id for registered in registered_rules()}
        unknown = [rule_id for rule_id in stray if rule_id not in installed]
        if unknown:
            raise ConfigError(f"configuration names unknown rule {unknown[0]} under rules")
    return {
        rule_id: _configured(rule, settings.rule_options.get(rule_id, {}), settings.profile)
        for rule_id, rule in selected.items()
    }


def _configured(
    rule: type[Rule], given: Mapping[str, JsonValue], profile: str
) -> ConfiguredRule:
    meta = rule.meta
    declared = {option.name: option for option in (*meta.options, BUDGET_OPTION)}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r} for rule {meta.id} "
            f"(known: {', '.join(sorted(declared))})"
        )
    values: dict[str, JsonValue] = {}
    for name, option in declared.items():
        try:
            values[name] = option.parse(given.get(name, option.default))
        except OptionValueError as error:
            raise ConfigError(f"option {name} for rule {meta.id} {error}") from None
    budget = values.pop(BUDGET_OPTION.name)
    return ConfiguredRule(
        rule,
        values,
        float(budget) if isinstance(budget, float) else PROFILE_BUDGETS_S[profile],
    )


def run_audit(
    subject: Subject,
    rules: Sequence[type[Rule]],
    settings: EngineSettings,
    progress: Progress = lambda _: None,
    cache: RunCache | None = None,
    *,
    loaded: LoadedModel | None = None,
    cluster: Cluster | None = None,
) -> AuditRun:
    """Run ``rules`` on ``subject``. ``cache`` is the run's: give the one the subject was built
    with (:func:`mlaudit.subject.build.build_subject`) so the model file is parsed once; by default
    the run has a cache of its own.

    ``loaded`` is a model the caller already holds in this process (``mlaudit.scan`` given
    an object), and ``subject.model`` its stand-in: there is no file for the artifact rules
    (skipped, saying so) or the load gate, nothing to load, and no worker can isolate an object
    that already lives here, so its behavioural rules run in this process (isolation none,
    recorded with why; ``isolation strict`` is a usage error).
    """
    if loaded is not None and cluster is not None:
        raise UsageError(
            "a model given in memory cannot go to a cluster's workers, which load the audited "
            "file's bytes: save it to a file to audit it on a cluster"
        )
    if loaded is not None and settings.isolation == "strict":
        raise UsageError(
            "isolation strict cannot apply to a model given in memory: it already runs in this "
            "process; save it to a file to audit it in an isolated worker"
        )
    configured = configure(rules, settings)
    settings = _with_text_column(settings, subject)
    cache = cache if cache is not None else RunCache()
    in_memory = loaded is not None
    by_stage = {
        stage: [configured[r.meta.id] for r in rules if r.meta.stage is stage] for stage in Stage
    }
    results = [
        _run_rule(r, subject, None, None, settings=settings, cache=cache, progress=progress,
                  in_memory=in_memory)
        for r in by_stage[Stage.ARTIFACT]
    ]
    stage = _ModelStage()
    # Only rules that query the model make it worth loading (MLA401 reads the data alone).
    # One that can also run without it (uses_model_if_loaded) runs after the worker, on the
    # data alone, when the model does not load.
    model_rules = [
        r for r in by_stage[Stage.BEHAVIOURAL]
        if Requirement.MODEL in r.rule.meta.requires or r.rule.meta.uses_model_if_loaded
    ]
    delegate = _delegate(cluster, subject, results, settings)
    if loaded is not None:
        stage = _in_memory_stage(subject, loaded, settings, queried=bool(model_rules))
    elif model_rules:
        stage = _model_stage(
            subject, model_rules, results, settings, cache=cache, progress=progress,
            delegate=delegate,
        )
    for rule_stage in (Stage.BEHAVIOURAL, Stage.STATIC):
        results.extend(
            stage.worker_results.get(r.rule.meta.id) or _run_rule(
                r, subject, stage.model, stage.decision, settings=settings, cache=cache,
                progress=progress, not_runnable=stage.not_runnable, in_memory=in_memory,
                query_failure=stage.probe.failure, delegate=delegate,
            )
            for r in by_stage[rule_stage]
        )
    isolation = stage.isolation or IsolationRecord.of(
        settings.isolation, None, "no rule loaded the model: nothing ran in a worker"
    )
    if loaded is not None:
        kind = type(loaded.estimator)  # named where it is defined: sklearn.ensemble._forest...
        source, model_type = ModelSource.IN_MEMORY, f"{kind.__module__}.{kind.__qualname__}"
    elif subject.model.format is ModelFormat.ENTRY_POINT:
        source, model_type = ModelSource.ENTRY_POINT, None
    else:
        source, model_type = ModelSource.FILE, None
    return AuditRun(tuple(results), stage.decision, stage.info, isolation, source, model_type)


def _delegate(
    cluster: Cluster | None,
    subject: Subject,
    artifact_results: Sequence[RuleResult],
    settings: EngineSettings,
) -> Delegate | None:
    """Where the model worker's rules send the work they fan out: the run's cluster, whose
    workers load the model file through the same gate, with the same settings."""
    if cluster is None:
        return None
    return cluster.delegate_for(
        subject, artifact_results, trust_model=settings.trust_model,
        extra_allowed=settings.extra_allowed, load_options=settings.load_options,
        isolation=settings.isolation, load_budget_s=PROFILE_BUDGETS_S[settings.profile],
    )


def _in_memory_stage(
    subject: Subject, model: LoadedModel, settings: EngineSettings, *, queried: bool
) -> _ModelStage:
    """A model given in memory: no gate (no bytes to scan), no loader, no worker. What the
    report says of it is known without querying it; the data is checked against it only
    when a rule will query it, as a loaded file model's is."""
    isolation = IsolationRecord.of(
        "none", None,
        "model given in memory: it lives in the caller's process, so the rules that query it "
        "run there; no worker can isolate an object that is already loaded",
    )
    if not queried:
        return _ModelStage(info=ModelInfo.of(model), isolation=isolation)
    decision = LoadDecision(LoadStatus.ALLOWED, (IN_MEMORY_LOAD_REASON,))
    probe = _QueryProbe()
    model = _usable(subject, model, settings, probe)
    return _ModelStage(decision, model, ModelInfo.of(model), isolation=isolation, probe=probe)


def _model_stage(
    subject: Subject,
    model_rules: Sequence[ConfiguredRule],
    earlier: Sequence[RuleResult],
    settings: EngineSettings,
    *,
    cache: RunCache,
    progress: Progress,
    delegate: Delegate | None = None,
) -> _ModelStage:
    """The load gate, then the model loaded in a worker (or here, with isolation none)."""
    decision = decide(subject.model, earlier, trust_model=settings.trust_model)
    loader = loader_for(subject.model.format)
    if not decision.may_load or loader is None:
        if not decision.may_load:
            progress(f"load gate blocked the model: {decision.summary()}")
        return _ModelStage(decision)
    progress(f"loading {subject.model.format.value} model {subject.model.reference}")
    if settings.isolation == "strict" and not hasattr(os, "fork"):
        raise UsageError("--isolation strict: this platform cannot fork an isolated worker")
    if settings.isolation == "none" or not hasattr(os, "fork"):
        return _in_process(subject, decision, loader, settings, cache)
    configured = {r.rule.meta.id: r for r in model_rules}
    runnable = [
        r.rule for r in model_rules
        if _unmet_requirement(r.rule, subject, decision, None, model_ready=True) is None
    ]
    worker_cache = _WorkerCache(cache)
    probe = _QueryProbe()  # set and read in the worker, where the model is loaded and queried
    outcome = run_job(
        WorkerJob(
            rules=runnable,
            load=lambda: _load(subject, loader, settings, worker_cache.get(), probe),
            run_rule=lambda rule, model, report: _run_rule(
                configured[rule.meta.id], subject, model, decision, settings=settings,
                cache=worker_cache.get(), progress=report, call=_call_directly,
                delegate=parent_delegate(),
                query_failure=probe.failure,
            ),
            budget_for=lambda rule_id: configured[rule_id].budget_s,
            load_budget_s=PROFILE_BUDGETS_S[settings.profile],
            read_paths=_model_read_paths(subject, settings),
            memory_bytes=address_space_limit(),
            strict=settings.isolation == "strict",
            progress=progress,
            delegate=delegate,
        )
    )
    return _ModelStage(
        decision,
        info=outcome.model,
        worker_results=outcome.results,
        not_runnable=outcome.not_runnable,
        isolation=IsolationRecord.of(settings.isolation, outcome.confinement),
    )


class _WorkerCache:
    """The run cache where the model worker computes: in each forked worker, a cache of its
    own seeded with what the parent computed before the fork (the parsed model file, say).
    Results a worker computes stay in it; a fresh worker after a crash starts again from the
    parent's. In the parent itself it is the run's cache."""

    def __init__(self, parent: RunCache) -> None:
        self._parent = parent
        self._pid = os.getpid()
        self._cache = parent

    def get(self) -> RunCache:
        if self._pid != os.getpid():
            self._cache, self._pid = self._parent.for_forked_worker(), os.getpid()
        return self._cache


def _in_process(
    subject: Subject,
    decision: LoadDecision,
    loader: Loader,
    settings: EngineSettings,
    cache: RunCache,
) -> _ModelStage:
    """Isolation none (or a platform without fork): load here, with mlaudit's own rights."""
    note = _IN_PROCESS_NOTE if settings.isolation == "none" else (
        "this platform cannot fork a worker: " + _IN_PROCESS_NOTE.split(": ", 1)[1]
    )
    isolation = IsolationRecord.of(settings.isolation, None, note)
    probe = _QueryProbe()
    try:
        model = _load(subject, loader, settings, cache, probe)
    except ModelNotRunnable as reason:
        return _ModelStage(decision, not_runnable=str(reason), isolation=isolation)
    return _ModelStage(decision, model, ModelInfo.of(model), isolation=isolation, probe=probe)


def _load(
    subject: Subject,
    loader: Loader,
    settings: EngineSettings,
    cache: RunCache,
    probe: _QueryProbe,
) -> LoadedModel:
    """The model, loaded and checked against every data file (see :func:`_usable`); what the
    load alone cost (time, memory) is measured around the loader, for MLA801."""
    return _usable(subject, measure_load(lambda: loader(
        subject.model,
        trusted=settings.trust_model,
        extra_allowed=settings.extra_allowed,
        cache=cache,
        options=settings.load_options,
    )), settings, probe)


def _with_text_column(settings: EngineSettings, subject: Subject) -> EngineSettings:
    """The data's one text column as ``text_column`` when the user named none, so a text
    model reads it wherever it is loaded (this worker, a cluster's); other models ignore it."""
    column = compat.sole_text_column(subject.datasets)
    if settings.load_options.text_column is not None or column is None:
        return settings
    return replace(settings, load_options=replace(settings.load_options, text_column=column))


def _usable(
    subject: Subject, model: LoadedModel, settings: EngineSettings, probe: _QueryProbe
) -> LoadedModel:
    """``model`` with its text column named, once every data file is known to have the
    columns it takes (an input error otherwise). A model that raises on a few rows of the
    data does not stop the audit: ``probe`` records why, for the rules that query it."""
    model = compat.with_text_column(model, subject.datasets, settings.load_options.text_column)
    for dataset in subject.datasets:
        try:
            compat.require_usable(dataset, model)
        except compat.QueryFailure as failure:
            probe.failure = str(failure)
            break
    return model


def _model_read_paths(subject: Subject, settings: EngineSettings) -> tuple[Path, ...]:
    """Beyond Python's own paths, what the worker must read: the model file, and the working
    folder where the user's own modules are imported from: a ``module:callable`` model's, a
    ``model_class``'s, or the classes a pickle names that the user allowed or trusted; and
    the data files."""
    paths = [subject.model.path] if subject.model.path is not None else []
    if (
        subject.model.format is ModelFormat.ENTRY_POINT
        or settings.load_options.model_class is not None
        or settings.extra_allowed
        or settings.trust_model
    ):
        paths.append(Path.cwd())
    # The data files: the worker holds their rows already (forked with the subject), and the
    # data rules read a file again to count exactly what the loader only sampled.
    paths.extend(d.path for d in subject.datasets if d.path.is_file())
    return tuple(paths)


def _unmet_requirement(
    rule: type[Rule],
    subject: Subject,
    decision: LoadDecision | None,
    not_runnable: str | None,
    *,
    model_ready: bool,
    in_memory: bool = False,
) -> str | None:
    meta = rule.meta
    # Before the extra and the format: no install makes a file appear, and a model given in
    # memory has no file format to check (its subject's format is a stand-in).
    if in_memory and Requirement.ARTIFACT in meta.requires:
        return NO_FILE_REASON
    if not extra_installed(rule):
        return f"needs the '{meta.extra}' extra: {extra_hint(rule)}"
    if meta.formats is not None and (in_memory or subject.model.format not in meta.formats):
        applies = ", ".join(sorted(f.value for f in meta.formats))
        given = "was given in memory" if in_memory else f"is {subject.model.format.value}"
        return f"applies to {applies} models; this model {given}"
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
    if Requirement.MODEL in meta.requires and not model_ready:
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
    configured: ConfiguredRule,
    subject: Subject,
    model: LoadedModel | None,
    decision: LoadDecision | None,
    *,
    settings: EngineSettings,
    cache: RunCache,
    progress: Progress,
    not_runnable: str | None = None,
    call: Call | None = None,
    in_memory: bool = False,
    query_failure: str | None = None,
    delegate: Delegate | None = None,
) -> RuleResult:
    rule, budget = configured.rule, configured.budget_s
    meta = rule.meta
    unmet = _unmet_requirement(
        rule, subject, decision, not_runnable, model_ready=model is not None,
        in_memory=in_memory,
    )
    if unmet is not None:
        progress(f"{meta.id} skipped: {unmet}")
        return RuleResult(meta.id, meta.name, meta.family.value, Status.SKIPPED, None, unmet)
    if query_failure is not None and Requirement.MODEL in meta.requires:
        # Not skipped: the rule applies and was asked for, so not running it leaves the audit
        # incomplete, and the gate fails closed (unless --allow-incomplete).
        progress(f"{meta.id} error: {query_failure}")
        return RuleResult(
            meta.id, meta.name, meta.family.value, Status.ERROR, None, query_failure
        )
    counted = model.counting() if model is not None else None
    ctx = RuleContext(
        meta, subject, counted, configured.options, settings.seed, settings.profile,
        time.monotonic() + budget,
        progress=lambda message: progress(f"{meta.id} {message}"),
        cache=cache,
        delegate=delegate,
    )
    progress(f"{meta.id} {meta.name}")
    started = time.perf_counter()
    findings, failure = (call or _call_with_budget)(rule(), ctx, budget)
    duration = time.perf_counter() - started
    queries = counted.queries if counted is not None else None
    base = (meta.id, meta.name, meta.family.value)
    if isinstance(failure, ConfigError):
        raise failure  # the configuration is wrong, not the model: exit 2, no report
    if isinstance(failure, RuleSkipped):
        return RuleResult(*base, Status.SKIPPED, None, str(failure), duration_s=duration)
    if isinstance(failure, BudgetExceeded):
        progress(f"{meta.id} error: {failure}")
        # An abandoned rule may still be writing its metrics: report none rather than a torn set.
        return RuleResult(*base, Status.ERROR, None, str(failure), duration_s=duration,
                          queries=queries)
    if failure is not None:
        reason = f"{type(failure).__name__}: {failure}"
        progress(f"{meta.id} error: {reason}")
        return RuleResult(
            *base, Status.ERROR, None, reason, dict(ctx.metrics), duration_s=duration,
            queries=queries, traceback="".join(traceback.format_exception(failure)),
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


def _call_directly(
    rule: Rule, ctx: RuleContext, budget: float
) -> tuple[list[Finding], BaseException | None]:
    """Run ``rule.check`` on this thread: in a worker, whose parent kills it past the budget."""
    try:
        return list(rule.check(ctx)), None
    except BaseException as error:  # isolate every failure, including SystemExit
        return [], error


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
