"""What a dependency file declares: requirements with where they were written, and problems."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")
# A full commit id after "@" (pip: git+https://host/repo@<commit>) or as uv.lock's fragment.
_COMMIT = re.compile(r"[@#]([0-9a-f]{40}|[0-9a-f]{64})(#|$)")


class Kind(enum.Enum):
    """How a requirement was declared."""

    REQUIREMENT = "requirement"  # a line of a requirements file
    CONSTRAINT = "constraint"  # a line of a -c constraints file
    PYPROJECT = "pyproject"  # pyproject.toml dependencies and groups
    LOCK = "lock"  # uv.lock or poetry.lock: resolved


@dataclass(frozen=True)
class Origin:
    """A file and a 1-based line (None where a file has no lines to point at)."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Declared:
    """One declared dependency.

    ``name`` is canonical (PEP 503: lower case, runs of ``-_.`` as ``-``); ``version`` is the
    exact version when the declaration pins one (``==1.2`` without a wildcard, ``===``, or a
    lock entry); ``url`` a direct reference (PEP 508 ``@ URL``, a bare URL or path, VCS).
    """

    name: str
    text: str
    origin: Origin
    kind: Kind
    specifier: str = ""
    version: str | None = None
    url: str | None = None
    editable: bool = False
    hashes: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()

    @property
    def is_vcs(self) -> bool:
        return self.url is not None and self.url.startswith(VCS_PREFIXES)

    @property
    def vcs_commit_pinned(self) -> bool:
        return self.url is not None and _COMMIT.search(self.url) is not None

    @property
    def is_local(self) -> bool:
        return self.url is not None and (
            self.url.startswith("file:") or "://" not in self.url
        ) and not self.is_vcs


@dataclass(frozen=True)
class Problem:
    """A line that could not be read; the rest of the file was still checked."""

    origin: Origin
    message: str


@dataclass(frozen=True)
class IndexOption:
    """A pip option that changes where packages come from (``--extra-index-url`` ...)."""

    origin: Origin
    option: str
    value: str


@dataclass(frozen=True)
class DependencySet:
    """Everything read from the dependency files, includes and locks beside them."""

    requirements: tuple[Declared, ...]
    problems: tuple[Problem, ...]
    index_options: tuple[IndexOption, ...]
    files: tuple[str, ...]

    def names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.requirements if r.name)
