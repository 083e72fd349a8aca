"""pip requirements files, read the way pip reads them, with every line's number kept.

Written here rather than taken from a library, for two reasons: every finding must point at
its file and line, and one bad line must not stop the rest of the file from being checked.
pip's own parser is not a public API, ``requirements-parser`` keeps no line numbers, and
``pip-requirements-parser`` vendors a pip of 2022. Only the file's layout is handled here,
following pip's ``req_file.py`` (continuation lines, comments, ``${VAR}``, options, ``-r``
and ``-c`` includes, per-line ``--hash``); the requirement strings themselves are parsed by
``packaging`` (PEP 508), as pip does.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from mlaudit.deps.model import VCS_PREFIXES, Declared, IndexOption, Kind, Origin, Problem

_COMMENT = re.compile(r"(^|\s+)#.*$")
_ENV_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)\}")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_MAX_INCLUDE_DEPTH = 20

_ALIASES = {
    "-r": "--requirement",
    "-c": "--constraint",
    "-e": "--editable",
    "-i": "--index-url",
    "-f": "--find-links",
    "-C": "--config-settings",
}
_FLAGS = frozenset({"--no-index", "--pre", "--prefer-binary", "--require-hashes"})
_SOURCE_OPTIONS = frozenset({"--index-url", "--extra-index-url", "--find-links", "--trusted-host"})
_PER_REQUIREMENT = frozenset({"--hash", "--config-settings", "--global-option", "--install-option"})
_WITH_VALUE = (
    frozenset({"--requirement", "--constraint", "--editable", "--no-binary", "--only-binary"})
    | frozenset({"--use-feature"})
    | _SOURCE_OPTIONS
    | _PER_REQUIREMENT
)
_ARCHIVES = (".whl", ".tar.gz", ".tar.bz2", ".tgz", ".zip")
_NAMED_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")


@dataclass
class Collected:
    """What reading one or more requirement files gathered (mutable while reading)."""

    requirements: list[Declared] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    index_options: list[IndexOption] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines joined over trailing backslashes, comments removed, ``${VAR}`` expanded.

    Yields the number of each logical line's first physical line, as pip reports it.
    """
    pending: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), 1):
        is_comment = _COMMENT.match(line) is not None
        if line.endswith("\\") and not is_comment:
            first = first if pending else number
            pending.append(line[:-1])
            continue
        if pending:
            joined, pending = "".join([*pending, line]), []
            yield from _cleaned(first, joined)
        else:
            yield from _cleaned(number, line)
    if pending:
        yield from _cleaned(first, "".join(pending))


def _cleaned(number: int, line: str) -> Iterator[tuple[int, str]]:
    line = _COMMENT.sub("", line).strip()
    if line:
        yield number, _ENV_VAR.sub(lambda m: os.environ.get(m["name"], m[0]), line)


def _split(line: str) -> tuple[str, list[str]]:
    """pip's split: the requirement runs up to the first token that starts with ``-``."""
    tokens = line.split(" ")
    for index, token in enumerate(tokens):
        if token.startswith("-"):
            return " ".join(tokens[:index]).strip(), shlex.split(" ".join(tokens[index:]))
    return line, []


def parse_options(tokens: list[str]) -> list[tuple[str, str | None]]:
    """``[(option, value)]`` with short and ``=`` forms normalised; ValueError when unknown."""
    parsed: list[tuple[str, str | None]] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        position += 1
        if token.startswith("--"):
            name, equals, value = token.partition("=")
        elif token[:2] in _ALIASES and len(token) > 2:
            name, equals, value = token[:2], "=", token[2:].lstrip("=")
        else:
            name, equals, value = token, "", ""
        option = _ALIASES.get(name, name)
        if option in _FLAGS:
            parsed.append((option, None))
            continue
        if option not in _WITH_VALUE:
            raise ValueError(f"unknown option {name}")
        if not equals:
            if position >= len(tokens):
                raise ValueError(f"option {name} needs a value")
            value = tokens[position]
            position += 1
        parsed.append((option, value))
    return parsed


def pinned_version(specifier: SpecifierSet) -> str | None:
    """The exact version a specifier allows: ``==1.2`` (no wildcard) or ``===1.2``."""
    exact = [
        s.version for s in specifier
        if s.operator == "===" or (s.operator == "==" and not s.version.endswith("*"))
    ]
    return exact[0] if len(exact) == 1 else None


def _name_from_reference(reference: str) -> str:
    egg = _EGG.search(reference)
    if egg:
        return canonicalize_name(egg.group(1))
    filename = reference.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        if filename.endswith((".tar.gz", ".zip")):
            return str(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return ""
    return ""


def _is_bare_reference(text: str) -> bool:
    """A URL, VCS URL, path or archive file pip installs directly (not ``name @ url``)."""
    if _NAMED_REFERENCE.match(text):
        return False
    return (
        text.startswith((*VCS_PREFIXES, ".", "/", "~"))
        or "://" in text
        or text.endswith(_ARCHIVES)
    )


def declared(
    text: str, origin: Origin, kind: Kind, hashes: tuple[str, ...] = (), editable: bool = False
) -> Declared | Problem:
    """One requirement string: PEP 508, or a bare URL, VCS URL or path as pip accepts."""
    if editable or _is_bare_reference(text):
        name = _name_from_reference(text)
        return Declared(name, text, origin, kind, url=text, editable=editable, hashes=hashes)
    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        reason = str(error).splitlines()[0]
        return Problem(origin, f"not a valid requirement ({reason}): {text}")
    return Declared(
        canonicalize_name(requirement.name),
        text,
        origin,
        kind,
        specifier=str(requirement.specifier),
        version=pinned_version(requirement.specifier),
        url=requirement.url,
        hashes=hashes,
        extras=tuple(sorted(requirement.extras)),
    )


def read_requirements_file(
    path: Path, kind: Kind, into: Collected, seen: frozenset[Path] = frozenset()
) -> None:
    """Read ``path`` and the files it includes into ``into``."""
    into.files.append(str(path))
    try:
        text = path.read_text("utf-8-sig")
    except UnicodeDecodeError:
        into.problems.append(Problem(Origin(str(path)), "not UTF-8 text; not checked"))
        return
    except OSError as error:
        into.problems.append(Problem(Origin(str(path)), f"cannot read: {error.strerror}"))
        return
    reading = _Reading(path, kind, into, seen | {path.resolve()})
    for number, line in logical_lines(text):
        origin = Origin(str(path), number)
        try:
            reading.line(line, origin)
        except ValueError as error:
            into.problems.append(Problem(origin, f"{error}: {line}"))


def into_item(into: Collected, item: Declared | Problem) -> None:
    if isinstance(item, Problem):
        into.problems.append(item)
    else:
        into.requirements.append(item)


@dataclass(frozen=True)
class _Reading:
    """One requirements file being read: where it is, what it declares, what was read."""

    path: Path
    kind: Kind
    into: Collected
    seen: frozenset[Path]

    def line(self, line: str, origin: Origin) -> None:
        requirement, tokens = _split(line)
        options = parse_options(tokens)
        if requirement:
            misplaced = [o for o, _ in options if o not in _PER_REQUIREMENT]
            if misplaced:
                raise ValueError(f"option {misplaced[0]} cannot follow a requirement")
            hashes = tuple(v for o, v in options if o == "--hash" and v)
            into_item(self.into, declared(requirement, origin, self.kind, hashes))
            return
        for option, value in options:
            if value is None:
                continue  # a flag: --pre, --no-index, --require-hashes ...
            if option in {"--requirement", "--constraint"}:
                nested = Kind.CONSTRAINT if option == "--constraint" else self.kind
                self.include(value, nested)
            elif option == "--editable":
                into_item(self.into, declared(value, origin, self.kind, editable=True))
            elif option in _SOURCE_OPTIONS:
                self.into.index_options.append(IndexOption(origin, option, value))
            elif option in _PER_REQUIREMENT:
                raise ValueError(f"option {option} needs a requirement before it")

    def include(self, value: str, kind: Kind) -> None:
        if "://" in value:
            raise ValueError(f"remote include {value} not fetched (mlaudit reads local files only)")
        target = self.path.parent / value
        if not target.is_file():
            raise ValueError(f"included file {value} not found")
        if target.resolve() in self.seen:
            return  # an include cycle: every file is read once
        if len(self.seen) >= _MAX_INCLUDE_DEPTH:
            raise ValueError(f"includes nested deeper than {_MAX_INCLUDE_DEPTH} files")
        read_requirements_file(target, kind, self.into, self.seen)
