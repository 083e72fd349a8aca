"""Known advisories for a dependency set: resolve exact versions, match, merge aliases.

Only exact versions can be matched offline: pins (``==``, ``===``), lock entries and, with
``--env``, the installed distributions. A name declared only with a range is *unresolved*
(listed in the metrics, and an MLA602 finding); resolving it would need an index server.

One advisory is often published as several records (PYSEC-2024-110, GHSA-jw8x-6495-233v and
CVE-2024-5206 are one flaw): records that share an id or alias are merged into one match,
named by its CVE where there is one, else its GHSA, else its PYSEC id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from packaging.version import Version

from mlaudit.deps.environment import ENVIRONMENT_ORIGIN, Installed
from mlaudit.deps.model import DependencySet, Origin
from mlaudit.deps.osv import Advisory, VulnerabilityIndex
from mlaudit.deps.versions import affects, fixed_versions, parse_version

_ID_PREFERENCE = ("CVE-", "GHSA-", "PYSEC-")
_SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class Resolved:
    name: str
    version: str
    origin: Origin
    source: str  # "requirements" or "environment"


@dataclass(frozen=True)
class Match:
    dependency: Resolved
    primary: str
    ids: tuple[str, ...]
    summary: str
    severity: str | None
    score: float | None
    vector: str | None
    fixed: tuple[str, ...]
    cwe: tuple[str, ...]
    references: tuple[str, ...]


def _version_key(version: str) -> Version | str:
    """PEP 440 identity (``1.26.4`` is ``1.26.4.0``); text for versions that are not."""
    parsed = parse_version(version)
    return parsed if parsed is not None else version


def resolve(
    dependencies: DependencySet | None, installed: Mapping[str, Installed] | None
) -> tuple[list[Resolved], list[str]]:
    """Exact (name, version) pairs, each once (its first declaration), and unresolved names."""
    found: dict[tuple[str, Version | str], Resolved] = {}
    declared_names: set[str] = set()
    for requirement in dependencies.requirements if dependencies else ():
        if not requirement.name:
            continue
        declared_names.add(requirement.name)
        if requirement.version is not None:
            key = (requirement.name, _version_key(requirement.version))
            found.setdefault(
                key,
                Resolved(requirement.name, requirement.version, requirement.origin, "requirements"),
            )
    for distribution in (installed or {}).values():
        key = (distribution.name, _version_key(distribution.version))
        found.setdefault(
            key,
            Resolved(
                distribution.name, distribution.version, Origin(ENVIRONMENT_ORIGIN), "environment"
            ),
        )
    resolved_names = {name for name, _ in found}
    return list(found.values()), sorted(declared_names - resolved_names)


def _rank(identifier: str) -> tuple[int, str]:
    prefix = next((i for i, p in enumerate(_ID_PREFERENCE) if identifier.startswith(p)), 3)
    return prefix, identifier


def _groups(advisories: Sequence[Advisory]) -> list[list[Advisory]]:
    """Advisories joined when they share an id or alias (union-find over identifiers)."""
    parent: dict[str, str] = {}

    def root(identifier: str) -> str:
        parent.setdefault(identifier, identifier)
        while parent[identifier] != identifier:
            parent[identifier] = parent[parent[identifier]]
            identifier = parent[identifier]
        return identifier

    for advisory in advisories:
        for alias in advisory.aliases:
            parent[root(alias)] = root(advisory.id)
    groups: dict[str, list[Advisory]] = {}
    for advisory in advisories:
        groups.setdefault(root(advisory.id), []).append(advisory)
    return list(groups.values())


def _severity_rank(advisory: Advisory) -> int:
    return _SEVERITY_ORDER.index(advisory.severity) if advisory.severity else -1


def _merged(dependency: Resolved, group: Sequence[Advisory]) -> Match:
    members = sorted(group, key=lambda a: _rank(a.id))
    ids = sorted({i for a in members for i in (a.id, *a.aliases)}, key=_rank)
    worst = max(members, key=lambda a: (_severity_rank(a), a.score or 0.0))
    fixed = {v for a in members for v in fixed_versions(dependency.version, a.ranges)}
    return Match(
        dependency=dependency,
        primary=ids[0],
        ids=tuple(ids),
        summary=next((a.summary for a in members if a.summary), ""),
        severity=worst.severity,
        score=worst.score,
        vector=worst.vector,
        fixed=tuple(sorted(fixed, key=Version)),
        cwe=tuple(sorted({c for a in members for c in a.cwe})),
        references=tuple(dict.fromkeys(r for a in members for r in a.references)),
    )


def match(dependencies: Iterable[Resolved], index: VulnerabilityIndex) -> list[Match]:
    wanted = list(dependencies)
    advisories = index.advisories({d.name for d in wanted})
    matches: list[Match] = []
    for dependency in wanted:
        hits = [
            a for a in advisories.get(dependency.name, [])
            if affects(dependency.version, a.ranges, a.versions)
        ]
        matches.extend(_merged(dependency, group) for group in _groups(hits))
    return matches
