"""MLA6xx: the packages the model's code runs on, read from dependency files and metadata."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from mlaudit.core.findings import Family, Finding, JsonValue, Location, Severity
from mlaudit.rules.base import (
    OptionKind,
    Requirement,
    Rule,
    RuleContext,
    RuleMeta,
    RuleOption,
    RuleSkipped,
)
from mlaudit.rules.controls import SUPPLY_CHAIN

_MAX_LISTED = 100


class KnownVulnerabilities(Rule):
    """Known vulnerabilities (OSV, offline).

    **What it checks**: every exact dependency version against an offline copy of OSV's
    PyPI advisories. Versions come from pins (``==``, ``===``) in requirement files (with
    their ``-r`` and ``-c`` includes), ``uv.lock`` and ``poetry.lock`` entries (also read
    when they sit beside a given ``pyproject.toml``) and, with ``--env``, the distributions
    installed in the running interpreter. The database is OSV's bulk export
    (``PyPI/all.zip``), as the zip or the folder it unpacks to, given with ``--vuln-db PATH``
    (or ``vuln_db`` in the configuration, or ``MLAUDIT_VULN_DB``); ``mlaudit db fetch``
    downloads it. Versions are matched with OSV's own evaluation of ECOSYSTEM ranges
    (``introduced``, ``fixed``, ``last_affected``, ``limit``) in PEP 440 order and against
    explicit version lists; withdrawn records are skipped; records that are aliases of each
    other (a CVE, its GHSA and its PYSEC record) make one finding, named by the CVE. Severity
    is the record's CVSS score (v4, else v3, else v2), else its database-specific rating,
    else this rule's default (high); the message names the versions that fix it. The
    metrics record the database's SHA-256, record count and newest ``modified`` date, and
    list names declared without an exact version (they cannot be matched offline; MLA602
    reports them). A database whose newest record is older than ``max_age_days`` is a
    finding of its own. A database that cannot be read is an error (exit 2).

    **Why it matters**: a model service inherits every flaw of the libraries it runs on:
    a deserialisation flaw in the loader, a remote-code flaw in the serving stack. Pinned
    versions do not age well: a release that was clean when pinned may have a published
    exploit today.

    **How to fix**: upgrade to a fixed version named in the finding, or waive the finding
    with a reason when the vulnerable code path is not used. Refresh the database
    (``mlaudit db fetch``) before a release audit.

    **Options**: ``database`` the OSV export (``--vuln-db`` and ``vuln_db`` set it and win
    over it); ``max_age_days`` (30) how old the newest record may be before the database
    counts as stale (0 turns the check off).
    """

    meta = RuleMeta(
        id="MLA601",
        name="Known vulnerabilities (OSV)",
        family=Family.DEPENDENCIES,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.DEPENDENCIES}),
        extra="deps",
        extra_modules=("packaging", "cvss"),
        options=(
            RuleOption(
                "database", "", "OSV export: a zip or its folder (--vuln-db sets it)",
                kind=OptionKind.STRING,
            ),
            RuleOption(
                "max_age_days", 30.0,
                "newest record older than this, in days: stale database (0: not checked)",
                kind=OptionKind.NUMBER, minimum=0,
            ),
        ),
        controls=SUPPLY_CHAIN,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from mlaudit.deps.environment import installed_distributions
        from mlaudit.deps.manifests import read_dependencies
        from mlaudit.deps.matching import match, resolve
        from mlaudit.deps.osv import open_database

        database = ctx.option_str("database")
        if not database:
            raise RuleSkipped(
                "no vulnerability database: give --vuln-db PATH or vuln_db in the "
                "configuration (`mlaudit db fetch` downloads OSV's PyPI export)"
            )
        subject = ctx.subject
        dependencies = read_dependencies(subject.requirements) if subject.requirements else None
        installed = installed_distributions() if subject.environment else None
        resolved, unresolved = resolve(dependencies, installed)
        with open_database(Path(database), ctx.progress) as index:
            info = index.info
            matches = match(resolved, index)
        age = info.age_days(datetime.now(UTC))
        problems = dependencies.problems if dependencies else ()
        ctx.metrics.update(
            {
                "database": {
                    "path": info.path,
                    "format": info.kind,
                    "sha256": info.sha256,
                    "records": info.records,
                    "withdrawn_skipped": info.withdrawn,
                    "packages": info.packages,
                    "newest_modified": info.newest_modified,
                    "age_days": None if age is None else round(age, 1),
                    "index": info.index,
                },
                "files": list(dependencies.files) if dependencies else [],
                "environment": installed is not None,
                "dependencies_checked": len(resolved),
                "unresolved": list(unresolved[:_MAX_LISTED]),
                "unresolved_count": len(unresolved),
                "unparsed_lines": [str(p.origin) for p in problems[:_MAX_LISTED]],
                "vulnerable_dependencies": len({(m.dependency.name, m.dependency.version)
                                                for m in matches}),
                "advisories": len(matches),
            }
        )
        for found in matches:
            dependency = found.dependency
            pointer = f"{dependency.name}=={dependency.version}"
            others = [i for i in found.ids if i != found.primary]
            fix = (
                f"Fixed in {', '.join(found.fixed)}." if found.fixed
                else "No fixed release is known."
            )
            evidence: dict[str, JsonValue] = {
                "ids": list(found.ids),
                "fixed": list(found.fixed),
                "cvss_score": found.score,
                "cvss_vector": found.vector,
                "severity_source": "advisory" if found.severity else "rule default",
                "declared_in": dependency.source,
            }
            finding = ctx.finding(
                key=f"{pointer}:{found.primary}",
                title=f"{dependency.name} {dependency.version}: {found.primary}",
                message=(
                    f"{dependency.name} {dependency.version} ({dependency.origin}) is affected "
                    f"by {found.primary}"
                    + (f" ({', '.join(others)})" if others else "")
                    + (f": {found.summary.rstrip('.')}." if found.summary else ".")
                    + f" {fix}"
                ),
                severity=Severity(found.severity) if found.severity else None,
                location=Location(
                    dependency.origin.path, line=dependency.origin.line, pointer=pointer
                ),
                evidence=evidence,
                cwe=found.cwe,
                artifact_key="dependencies",
            )
            yield dataclasses.replace(finding, references=found.references)
        limit = ctx.option_float("max_age_days")
        if limit > 0 and age is not None and age > limit:
            yield ctx.finding(
                key="stale-database",
                title="Vulnerability database is out of date",
                message=(
                    f"the newest record in {info.path} was modified {info.newest_modified} "
                    f"({age:.0f} days ago, more than max_age_days = {limit:g}): advisories "
                    "published since then are missed; run `mlaudit db fetch`"
                ),
                severity=Severity.MEDIUM,
                location=Location(info.path, pointer="newest modified"),
                evidence={"newest_modified": info.newest_modified, "age_days": round(age, 1)},
                artifact_key="database",
            )


class SupplyChainHygiene(Rule):
    """Supply-chain hygiene of the requirements.

    **What it checks**: the files given with ``--requirements`` (pip requirement files with
    their includes, ``pyproject.toml`` with a ``uv.lock`` or ``poetry.lock`` beside it, lock
    files) for what makes an install unrepeatable or spoofable, each finding at its file and
    line: requirements with no version (medium) or only a range (low) when no lock,
    constraint or pin in the set fixes them; requirement files with pins but no ``--hash``
    (low, one per file) or hashes on some lines only (medium: pip refuses such a file);
    direct URL dependencies (plain ``http://`` high, without a hash medium), VCS
    dependencies not pinned to a full commit (medium), local paths and editables (low);
    ``--extra-index-url`` (dependency confusion), ``--trusted-host`` and plain-HTTP indexes;
    lines that could not be parsed (medium, reported with file and line; the rest of the
    file is still checked). With ``--env``: distributions installed in the running
    interpreter that the requirements neither name nor need (through the installed
    dependency metadata), apart from mlaudit's own dependencies and ``ignore_installed``.

    **Why it matters**: the model ships with the packages it runs on. An unpinned or
    range-only requirement installs whatever was released last, an unhashed one whatever the
    index serves today, an extra index lets a public package shadow a private one, and an
    installed package nobody declared is code nobody reviewed.

    **How to fix**: compile exact pins with hashes (``pip-compile --generate-hashes``,
    ``uv pip compile --generate-hashes``, or commit ``uv.lock``/``poetry.lock``); install
    from released versions or pin VCS URLs to a full commit; use one index that proxies the
    others; build the serving image from the lock file alone so nothing else is installed.

    **Options**: ``require_hashes`` (true) reports pinned requirement files without any
    hashes; ``ignore_installed`` (``["pip", "setuptools", "wheel"]``) installed names never
    reported as undeclared.
    """

    meta = RuleMeta(
        id="MLA602",
        name="Supply-chain hygiene",
        family=Family.DEPENDENCIES,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.REQUIREMENTS}),
        extra="deps",
        extra_modules=("packaging",),
        options=(
            RuleOption(
                "require_hashes", True, "report pinned requirement files without hashes",
                kind=OptionKind.BOOLEAN,
            ),
            RuleOption(
                "ignore_installed", ["pip", "setuptools", "wheel"],
                "installed names never reported as undeclared (with --env)",
                kind=OptionKind.STRINGS,
            ),
        ),
        controls=SUPPLY_CHAIN,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from packaging.utils import canonicalize_name

        from mlaudit.deps.environment import ENVIRONMENT_ORIGIN, installed_distributions
        from mlaudit.deps.hygiene import hygiene_issues
        from mlaudit.deps.manifests import read_dependencies

        dependencies = read_dependencies(ctx.subject.requirements)
        installed = installed_distributions() if ctx.subject.environment else None
        issues = hygiene_issues(
            dependencies,
            installed,
            require_hashes=ctx.option_bool("require_hashes"),
            ignore_installed=[canonicalize_name(n) for n in ctx.option_strs("ignore_installed")],
        )
        requirements = dependencies.requirements
        counts: dict[str, int] = {}
        for issue in issues:
            counts[issue.check] = counts.get(issue.check, 0) + 1
        ctx.metrics.update(
            {
                "files": list(dependencies.files),
                "requirements": len(requirements),
                "pinned": sum(1 for r in requirements if r.version is not None),
                "hashed": sum(1 for r in requirements if r.hashes),
                "unparsed_lines": len(dependencies.problems),
                "environment_checked": installed is not None,
                "issues_by_check": dict(sorted(counts.items())),
            }
        )
        for issue in issues:
            yield ctx.finding(
                key=f"{issue.check}:{issue.subject}",
                title=issue.title,
                message=issue.message,
                severity=Severity(issue.severity),
                location=Location(issue.origin.path, line=issue.origin.line, pointer=issue.pointer),
                cwe=[issue.cwe] if issue.cwe else [],
                artifact_key=(
                    "environment" if issue.origin.path == ENVIRONMENT_ORIGIN
                    else Path(issue.origin.path).name
                ),
            )
