"""MLA5xx: the training and serving code, read by bandit (never imported or run)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mlaudit.core.delegation import CLUSTER_THREADS
from mlaudit.core.findings import Confidence, Family, Finding, JsonValue, Location, Severity
from mlaudit.core.runcache import CacheKey
from mlaudit.rules.base import (
    OptionKind,
    Requirement,
    Rule,
    RuleContext,
    RuleMeta,
    RuleOption,
)
from mlaudit.rules.controls import CODE_SECURITY, SUPPLY_CHAIN

if TYPE_CHECKING:  # bandit is the ``code`` extra: imported only when a rule runs
    from mlaudit.code.bandit_run import BanditOptions, BanditRun, BatchScan, CodeIssue, SourceTree

_SEVERITY = {
    "UNDEFINED": Severity.INFO,
    "LOW": Severity.LOW,
    "MEDIUM": Severity.MEDIUM,
    "HIGH": Severity.HIGH,
}
_CONFIDENCE = {
    "UNDEFINED": Confidence.LOW,
    "LOW": Confidence.LOW,
    "MEDIUM": Confidence.MEDIUM,
    "HIGH": Confidence.HIGH,
}
_MAX_SKIPPED_LISTED = 100
BANDIT_OPTIONS = (
    RuleOption(
        "config", "", "bandit configuration file (YAML or TOML); default: the tree's own",
        kind=OptionKind.STRING,
    ),
    RuleOption("ignore_nosec", False, "report lines marked # nosec too", kind=OptionKind.BOOLEAN),
)


def bandit_run_for(ctx: RuleContext) -> BanditRun:
    """The bandit run over ``--source``, its figures recorded in the metrics; MLA501,
    MLA502 and MLA802 with the same options share one run per audit."""
    from mlaudit.code.bandit_run import discover_options, run_bandit

    assert ctx.subject.source is not None
    root = ctx.subject.source
    config = ctx.option_str("config")
    options = discover_options(
        root, Path(config) if config else None, ctx.option_bool("ignore_nosec")
    )
    run = ctx.shared(
        CacheKey("bandit", (str(root.resolve()), options)),
        lambda: run_bandit(
            root, options, progress=ctx.progress, check_budget=ctx.check_budget,
            remote=_on_cluster(ctx, options),
        ),
    )
    skipped: list[JsonValue] = [
        {"path": s.path, "reason": s.reason} for s in run.skipped[:_MAX_SKIPPED_LISTED]
    ]
    ctx.metrics.update(
        {
            "bandit_version": run.bandit_version,
            "files": run.files,
            "lines_of_code": run.lines,
            "nosec_lines": run.nosec,
            "config": list(options.sources),
            "skipped_files": skipped,
            "skipped_files_count": len(run.skipped),
        }
    )
    return run


def _on_cluster(
    ctx: RuleContext, options: BanditOptions
) -> Callable[[SourceTree], tuple[BatchScan, int]] | None:
    """With the run's cluster, bandit's batches go to its workers, one per task, as many
    at once as it has threads; without one (None) they are scanned here."""
    if ctx.delegate is None:
        return None
    from mlaudit.code.batches import delegated_batches

    threads = ctx.delegate(CLUSTER_THREADS, {}, 10.0)
    return delegated_batches(
        ctx.delegate, options, threads if isinstance(threads, int) else 1, ctx.deadline
    )


def bandit_findings(
    ctx: RuleContext, issues: Iterable[CodeIssue], references: bool
) -> Iterator[Finding]:
    """One finding per bandit issue, fingerprinted by file, test and the offending line's text.

    The fingerprint never holds a line number: code moving down a file keeps its findings
    (and their waivers). The same text flagged twice by one test in one file is told apart
    by its occurrence count.
    """
    from bandit.core import docs_utils

    seen: Counter[tuple[str, str, str]] = Counter()
    by_test: Counter[str] = Counter()
    for issue in issues:
        digest = hashlib.sha256(issue.code.encode("utf-8")).hexdigest()[:16]
        occurrence = seen[(issue.relative, issue.test_id, digest)]
        seen[(issue.relative, issue.test_id, digest)] += 1
        by_test[issue.test_id] += 1
        finding = ctx.finding(
            key=f"{issue.relative}:{issue.test_id}:{digest}:{occurrence}",
            title=f"{issue.test_id} {issue.test_name}",
            message=f"{issue.text} ({issue.relative}:{issue.line})",
            severity=_SEVERITY.get(issue.severity, Severity.MEDIUM),
            confidence=_CONFIDENCE.get(issue.confidence, Confidence.LOW),
            location=Location(
                issue.path, line=issue.line, column=issue.column, pointer=issue.test_id
            ),
            evidence={"test_id": issue.test_id, "test": issue.test_name, "code": issue.code},
            cwe=[f"CWE-{issue.cwe}"] if issue.cwe else [],
            artifact_key="source",
        )
        if references:
            finding = dataclasses.replace(finding, references=(docs_utils.get_url(issue.test_id),))
        yield finding
    ctx.metrics["issues_by_test"] = dict(sorted(by_test.items()))


class CodeSecurity(Rule):
    """Code security (bandit).

    **What it checks**: the source tree given with ``--source``, with bandit's own tests, run
    in-process through bandit's API: the same files ``bandit -r`` would pick (its ``include``
    and ``exclude_dirs``), the same tests, ``# nosec`` comments honoured, and bandit's own
    configuration read from the tree (a ``.bandit`` file at its root and the configuration
    file it names, or a ``[tool.bandit]`` table in the root's ``pyproject.toml``). Each
    finding keeps bandit's severity and confidence, and points at file, line and column
    (both 1-based) with the CWE. Files bandit cannot parse (not valid Python) are listed in
    the metrics as ``skipped_files``. mlaudit's own ML tests (MLA502) and serving tests
    (MLA802) are reported there, not here. Large trees are scanned in fixed batches of files in
    bounded memory, with progress shown; with a cluster (``--dask-scheduler``,
    ``--workers``) the batches are scanned on its workers, with the same report.

    **Why it matters**: the model is only as safe as the code that trains and serves it:
    shell commands built from requests, hard-coded secrets, disabled certificate checks and
    unsafe deserialisation in a serving path are how a model endpoint is taken over.

    **How to fix**: fix the code as bandit's message says (each finding links bandit's page
    for its test). A finding that is a false positive is silenced where it is, with a
    ``# nosec B603`` comment naming the test, or waived in mlaudit's configuration.

    **Options**: ``config`` a bandit configuration file (YAML, or TOML with ``[tool.bandit]``)
    to use instead of the tree's own; ``ignore_nosec`` (false) reports lines marked
    ``# nosec`` as well.
    """

    meta = RuleMeta(
        id="MLA501",
        name="Code security (bandit)",
        family=Family.CODE,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.SOURCE}),
        extra="code",
        extra_modules=("bandit",),
        options=BANDIT_OPTIONS,
        controls=CODE_SECURITY,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from mlaudit.code.plugin import ML_TESTS
        from mlaudit.serving.bandit_tests import SERVING_TESTS

        # mlaudit's own tests are reported by their rules (MLA502, MLA802), not here.
        own = ML_TESTS.keys() | SERVING_TESTS.keys()
        run = bandit_run_for(ctx)
        yield from bandit_findings(ctx, (i for i in run.issues if i.test_id not in own), True)


class UnsafeMLPatterns(Rule):
    """Unsafe ML code patterns.

    **What it checks**: the source tree given with ``--source`` for the ways ML code runs
    code it loads, with mlaudit's bandit plugin (test ids ``ML01``-``ML07``, registered with
    bandit so a plain ``bandit -r`` reports them too):
    ``ML01`` ``torch.load`` without ``weights_only=True`` (high when ``weights_only=False``);
    ``ML02`` ``pickle``, ``joblib``, ``dill``, ``cloudpickle`` loads and ``pandas.read_pickle``;
    ``ML03`` ``numpy.load(allow_pickle=True)``;
    ``ML04`` ``trust_remote_code=True`` in any call (``from_pretrained``, ``pipeline``,
    ``load_dataset``);
    ``ML05`` ``yaml.load`` without a safe loader, and ``yaml.unsafe_load``;
    ``ML06`` Keras ``load_model(safe_mode=False)`` and ``enable_unsafe_deserialization()``;
    ``ML07`` ``eval``/``exec`` on a value named like a configuration (``cfg["activation"]``).
    Import aliases are resolved; a flag computed at run time is reported with low
    confidence. ``# nosec ML02`` silences one line. Findings point at file, line and column.

    **Why it matters**: a model file, a checkpoint or a config is data a user can upload or
    an attacker can swap on a model hub; every pattern above turns that data into code that
    runs with the service's rights. Scanning the model file (MLA1xx) protects one artifact;
    this rule finds the code path that will load the next one.

    **How to fix**: load weights with ``torch.load(..., weights_only=True)`` or safetensors;
    save scikit-learn models with skops and load them with an explicit trusted-types list;
    keep ``allow_pickle=False``; pin a reviewed revision instead of
    ``trust_remote_code=True``; use ``yaml.safe_load``; keep Keras' ``safe_mode``; map
    config names to objects with a dictionary or ``ast.literal_eval``.

    **Options**: ``config`` a bandit configuration file to use instead of the tree's own (its
    ``skips`` may turn mlaudit's tests off like any bandit test); ``ignore_nosec`` (false)
    reports lines marked ``# nosec`` as well.
    """

    meta = RuleMeta(
        id="MLA502",
        name="Unsafe ML code patterns",
        family=Family.CODE,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.SOURCE}),
        extra="code",
        extra_modules=("bandit",),
        options=BANDIT_OPTIONS,
        controls=SUPPLY_CHAIN,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from mlaudit.code.bandit_run import plugin_loaded
        from mlaudit.code.plugin import ML_TESTS

        if not plugin_loaded():
            raise RuntimeError(
                "bandit did not load mlaudit's plugin (bandit.plugins entry points): "
                "reinstall mlaudit"
            )
        run = bandit_run_for(ctx)
        yield from bandit_findings(ctx, (i for i in run.issues if i.test_id in ML_TESTS), False)
