"""Supply-chain hygiene of a dependency set (MLA602): what makes an install unrepeatable.

Heuristics, each a judgement on the whole set rather than on one line:

- *unpinned* / *range-only*: a requirement or ``pyproject.toml`` dependency with no exact
  version, unless the same name is pinned elsewhere in the set (a lock file, a constraints
  file, a compiled requirements file): a library's ranges are fine when a lock pins them.
- *hashes*: a requirements file with pins and no ``--hash`` at all (one finding for the
  file), or with hashes on some lines but not others (pip's hash-checking mode, switched on
  by the first hash, refuses the whole file: one finding per pinned line without one).
- *direct references*: URLs (``http://`` high, no hash medium, hashed low), VCS URLs (not
  pinned to a full commit medium, pinned low), local paths and editables (low).
- *index options*: ``--extra-index-url`` (dependency confusion), ``--trusted-host`` (TLS not
  verified), any ``http://`` index or find-links.
- *unparseable* lines, which were not checked.
- with ``--env``: installed distributions that nothing the requirements name needs (not
  named and not in the installed dependency closure of what is named), apart from mlaudit's
  own closure and the installer's tools.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlaudit.deps.environment import ENVIRONMENT_ORIGIN, Installed, closure, own_closure
from mlaudit.deps.model import Declared, DependencySet, Kind, Origin

_CWE_UNTRUSTED = "CWE-829"
_CWE_NO_INTEGRITY = "CWE-494"
_CWE_CLEARTEXT = "CWE-319"


@dataclass(frozen=True)
class HygieneIssue:
    check: str
    subject: str
    title: str
    message: str
    severity: str
    origin: Origin
    pointer: str | None
    cwe: str | None = None


def _pin_issue(requirement: Declared) -> HygieneIssue:
    if not requirement.specifier:
        return HygieneIssue(
            "unpinned", requirement.name, "Unpinned requirement",
            f"{requirement.text} has no version: every install may get a different release",
            "medium", requirement.origin, requirement.name, _CWE_UNTRUSTED,
        )
    return HygieneIssue(
        "range-only", requirement.name, "Requirement pinned to a range only",
        f"{requirement.text} allows a range ({requirement.specifier}) and no lock or pin in "
        "the set fixes it: builds are not repeatable",
        "low", requirement.origin, requirement.name, _CWE_UNTRUSTED,
    )


def _has_hash(requirement: Declared) -> bool:
    fragment = (requirement.url or "").partition("#")[2]
    return bool(requirement.hashes) or "sha256=" in fragment or "sha512=" in fragment


def _reference_issue(requirement: Declared) -> HygieneIssue:
    url = requirement.url or ""
    what = requirement.name or url
    if requirement.is_vcs:
        if requirement.vcs_commit_pinned:
            return HygieneIssue(
                "vcs", what, "VCS dependency",
                f"{requirement.text} installs from version control (pinned to a commit); "
                "it bypasses the index and its hashes",
                "low", requirement.origin, what, _CWE_UNTRUSTED,
            )
        return HygieneIssue(
            "vcs", what, "VCS dependency on a moving reference",
            f"{requirement.text} installs from version control at a branch or tag that can "
            "move; pin a full commit id or use a released version",
            "medium", requirement.origin, what, _CWE_UNTRUSTED,
        )
    if requirement.is_local or requirement.editable:
        return HygieneIssue(
            "local-path", what, "Local path dependency",
            f"{requirement.text} installs from a local path: the build depends on this "
            "machine's files",
            "low", requirement.origin, what, _CWE_UNTRUSTED,
        )
    if url.startswith("http://"):
        return HygieneIssue(
            "direct-url", what, "Dependency downloaded over plain HTTP",
            f"{requirement.text} is downloaded without TLS: anyone on the path can swap it",
            "high", requirement.origin, what, _CWE_CLEARTEXT,
        )
    hashed = _has_hash(requirement)
    return HygieneIssue(
        "direct-url", what, "Direct URL dependency" + ("" if hashed else " without a hash"),
        f"{requirement.text} is downloaded from a URL, bypassing the index"
        + ("" if hashed else ", with no hash to check it against"),
        "low" if hashed else "medium", requirement.origin, what,
        _CWE_UNTRUSTED if hashed else _CWE_NO_INTEGRITY,
    )


def _hash_issues(requirements: Iterable[Declared], require_hashes: bool) -> Iterator[HygieneIssue]:
    by_file: dict[str, list[Declared]] = {}
    for requirement in requirements:
        if requirement.kind is Kind.REQUIREMENT:
            by_file.setdefault(requirement.origin.path, []).append(requirement)
    for path, group in by_file.items():
        hashed = [r for r in group if _has_hash(r)]
        if not hashed:
            if require_hashes and any(r.version for r in group):
                yield HygieneIssue(
                    "no-hashes", Path(path).name, "Requirements without hashes",
                    f"{path} pins versions but no hashes: a replaced or compromised release "
                    "installs unnoticed (pip-compile --generate-hashes, uv pip compile "
                    "--generate-hashes)",
                    "low", Origin(path), None, _CWE_NO_INTEGRITY,
                )
            continue
        for requirement in group:
            # Unpinned lines and direct references have findings of their own already.
            if requirement.version is not None and not _has_hash(requirement):
                yield HygieneIssue(
                    "hash-missing", requirement.name or requirement.text,
                    "Requirement without a hash in a hashed file",
                    f"{requirement.text} has no --hash while other lines of {path} do: pip's "
                    "hash-checking mode refuses the whole file",
                    "medium", requirement.origin, requirement.name or None, _CWE_NO_INTEGRITY,
                )


def _index_issues(dependencies: DependencySet) -> Iterator[HygieneIssue]:
    for option in dependencies.index_options:
        if option.value.startswith("http://"):
            yield HygieneIssue(
                "index", f"{option.option}={option.value}", "Package source over plain HTTP",
                f"{option.option} {option.value} serves packages without TLS",
                "high", option.origin, option.option, _CWE_CLEARTEXT,
            )
        elif option.option == "--extra-index-url":
            yield HygieneIssue(
                "index", f"{option.option}={option.value}", "Extra package index",
                f"--extra-index-url {option.value}: pip takes the highest version from any "
                "index, so a public package named like a private one wins (dependency "
                "confusion); use one index that proxies the others",
                "medium", option.origin, option.option, "CWE-427",
            )
        elif option.option == "--trusted-host":
            yield HygieneIssue(
                "index", f"{option.option}={option.value}", "Package host trusted without TLS",
                f"--trusted-host {option.value} turns off certificate checks for that host",
                "medium", option.origin, option.option, "CWE-295",
            )


def _unnamed_issues(
    dependencies: DependencySet, installed: Mapping[str, Installed], ignore: Iterable[str]
) -> Iterator[HygieneIssue]:
    roots = [(r.name, frozenset(r.extras)) for r in dependencies.requirements if r.name]
    accounted = (
        closure(roots, installed) | own_closure(installed) | set(ignore) | dependencies.names()
    )
    for name, distribution in installed.items():
        if name not in accounted:
            yield HygieneIssue(
                "not-named", name, "Installed package the requirements do not name",
                f"{name} {distribution.version} is installed but neither named by the "
                "requirements nor needed by anything they name",
                "low", Origin(ENVIRONMENT_ORIGIN), f"{name}=={distribution.version}",
            )


def hygiene_issues(
    dependencies: DependencySet,
    installed: Mapping[str, Installed] | None,
    *,
    require_hashes: bool,
    ignore_installed: Iterable[str],
) -> list[HygieneIssue]:
    pinned = {r.name for r in dependencies.requirements if r.version is not None}
    issues: list[HygieneIssue] = []
    for requirement in dependencies.requirements:
        if requirement.url is not None:
            issues.append(_reference_issue(requirement))
        elif (
            requirement.kind in (Kind.REQUIREMENT, Kind.PYPROJECT)
            and requirement.version is None
            and requirement.name not in pinned
        ):
            issues.append(_pin_issue(requirement))
    issues.extend(_hash_issues(dependencies.requirements, require_hashes))
    issues.extend(_index_issues(dependencies))
    for problem in dependencies.problems:
        digest = hashlib.sha256(problem.message.encode("utf-8")).hexdigest()[:16]
        issues.append(
            HygieneIssue(
                "unparseable", digest, "Dependency line not understood",
                f"{problem.origin}: {problem.message}; it was not checked",
                "medium", problem.origin, None,
            )
        )
    if installed is not None:
        issues.extend(_unnamed_issues(dependencies, installed, ignore_installed))
    return issues
