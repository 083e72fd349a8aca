"""Every kind of dependency file ``--requirements`` takes, read into one dependency set.

By file name: ``pyproject.toml`` (PEP 621 ``dependencies`` and ``optional-dependencies``,
PEP 735 ``dependency-groups``), ``uv.lock`` and ``poetry.lock`` (resolved versions, sources
and hashes); any other name is a pip requirements file. A ``uv.lock`` or ``poetry.lock``
beside a ``pyproject.toml`` is read with it: the lock holds the versions that get installed.
TOML keeps no line numbers, so a declaration's line is found by searching the file's text.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from mlaudit.deps.model import Declared, DependencySet, Kind, Origin, Problem
from mlaudit.deps.requirements import Collected, declared, into_item, read_requirements_file

LOCK_FILES = ("uv.lock", "poetry.lock")
_TOML_LINE = re.compile(r"at line (\d+)")


def read_dependencies(paths: Sequence[Path]) -> DependencySet:
    into = Collected()
    read: set[Path] = set()
    for path in paths:
        for member in _with_locks(path):
            if member.resolve() not in read:
                read.add(member.resolve())
                _read_one(member, into)
    return DependencySet(
        tuple(into.requirements), tuple(into.problems), tuple(into.index_options),
        tuple(into.files),
    )


def _with_locks(path: Path) -> Iterator[Path]:
    yield path
    if path.name == "pyproject.toml":
        yield from (path.parent / n for n in LOCK_FILES if (path.parent / n).is_file())


def _read_one(path: Path, into: Collected) -> None:
    if path.name not in ("pyproject.toml", *LOCK_FILES):
        read_requirements_file(path, Kind.REQUIREMENT, into)
        return
    into.files.append(str(path))
    try:
        text = path.read_text("utf-8")
        document = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as error:
        into.problems.append(Problem(Origin(str(path)), f"cannot read: {error}"))
        return
    except tomllib.TOMLDecodeError as error:
        line = _TOML_LINE.search(str(error))
        origin = Origin(str(path), int(line.group(1)) if line else None)
        into.problems.append(Problem(origin, f"not valid TOML: {error}"))
        return
    lines = _Lines(str(path), text)
    items = (
        _pyproject(document, lines) if path.name == "pyproject.toml"
        else _uv_lock(document, lines) if path.name == "uv.lock"
        else _poetry_lock(document, lines)
    )
    for item in items:
        into_item(into, item)


class _Lines:
    """Finds the line of each declaration in order, so repeated texts get their own lines."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.cursor = 0

    def origin(self, needle: str, *, whole_line: bool = False) -> Origin:
        for index in range(self.cursor, len(self.lines)):
            line = self.lines[index]
            if line.strip() == needle if whole_line else needle in line:
                self.cursor = index + 1
                return Origin(self.path, index + 1)
        return Origin(self.path)

    def package(self, name: object) -> Origin:
        """The ``name = "..."`` line that opens a lock's ``[[package]]`` entry."""
        return self.origin(f'name = "{name}"', whole_line=True)


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _pyproject(document: dict[str, Any], lines: _Lines) -> Iterator[Declared | Problem]:
    project = document.get("project", {})
    groups: list[Iterable[str]] = [_strings(project.get("dependencies"))]
    optional = project.get("optional-dependencies", {})
    groups += [_strings(v) for v in optional.values()] if isinstance(optional, dict) else []
    dependency_groups = document.get("dependency-groups", {})
    if isinstance(dependency_groups, dict):
        groups += [_strings(v) for v in dependency_groups.values()]
    for group in groups:
        for text in group:
            yield declared(text.strip(), lines.origin(f'"{text}"'), Kind.PYPROJECT)


def _packages(document: dict[str, Any]) -> list[dict[str, Any]]:
    packages = document.get("package", [])
    return [p for p in packages if isinstance(p, dict)] if isinstance(packages, list) else []


def _locked(
    package: dict[str, Any], lines: _Lines, url: str | None, hashes: Iterable[object]
) -> Declared | Problem:
    name, version = package.get("name"), package.get("version")
    origin = lines.package(name)
    if not isinstance(name, str) or not isinstance(version, str):
        return Problem(origin, "lock entry without a name and version")
    return Declared(
        canonicalize_name(name),
        f"{name}=={version}",
        origin,
        Kind.LOCK,
        specifier=f"=={version}",
        version=version,
        url=url,
        hashes=tuple(h for h in hashes if isinstance(h, str)),
    )


def _uv_lock(document: dict[str, Any], lines: _Lines) -> Iterator[Declared | Problem]:
    for package in _packages(document):
        source = package.get("source", {})
        source = source if isinstance(source, dict) else {}
        if "editable" in source or "virtual" in source:
            lines.package(package.get("name"))
            continue  # the project itself, or a workspace member: built from this tree
        url = None
        if "git" in source:
            url = f"git+{source['git']}"
        elif "url" in source:
            url = str(source["url"])
        elif "path" in source or "directory" in source:
            url = str(source.get("path") or source.get("directory"))
        artifacts = [package.get("sdist", {}), *package.get("wheels", [])]
        hashes = [a.get("hash") for a in artifacts if isinstance(a, dict)]
        yield _locked(package, lines, url, hashes)


def _poetry_lock(document: dict[str, Any], lines: _Lines) -> Iterator[Declared | Problem]:
    for package in _packages(document):
        source = package.get("source", {})
        source = source if isinstance(source, dict) else {}
        url = None
        if source.get("type") == "git":
            commit = source.get("resolved_reference") or source.get("reference") or ""
            url = f"git+{source.get('url')}@{commit}"
        elif source.get("type") in {"url", "file", "directory"}:
            url = str(source.get("url"))
        files = package.get("files", [])
        hashes = [f.get("hash") for f in files if isinstance(f, dict)] if isinstance(
            files, list
        ) else []
        yield _locked(package, lines, url, hashes)
