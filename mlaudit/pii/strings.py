"""Strings read statically from a model file, each with the object path that holds it.

The format readers (:mod:`mlaudit.pii.pickle_strings`, :mod:`mlaudit.pii.onnx_strings`) never
load or run the model; they return :class:`ArtifactStrings`, grouped by the path of the
container that holds each string (``steps[0][1].vocabulary_``, ``categories_[0]``, an ONNX
node attribute), which is what a finding points at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

# Bounds on the work one artifact can cause, whatever it holds: the default and the ceiling
# of the strings kept for analysis (MLA402's ``max_strings``), and the characters kept of one.
DEFAULT_MAX_STRINGS: Final = 100_000
MAX_STRINGS: Final = 500_000
MAX_STRING_CHARS: Final = 10_000
_ATTRIBUTE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def attribute_segment(key: str, index: int) -> str:
    """``.name`` for an attribute-like key, ``[#index]`` otherwise.

    Keys that are not identifiers are data, and data may be personal: a path must never
    spell out a value, so such keys are named by their position.
    """
    return f".{key}" if _ATTRIBUTE.match(key) else f"[#{index}]"


def render_path(path: str) -> str:
    return path.removeprefix(".") or "<root>"


@dataclass(frozen=True)
class ArtifactStrings:
    """Distinct strings per container path, in the order first met.

    ``total`` strings were kept; ``unread`` more were met past the cap and not kept (so not
    analysed); ``truncated`` says the cap was hit or some strings could not even be counted.
    """

    by_path: tuple[tuple[str, tuple[str, ...]], ...]
    total: int
    truncated: bool = False
    problems: tuple[str, ...] = ()
    unread: int = 0

    @property
    def distinct(self) -> int:
        return sum(len(strings) for _, strings in self.by_path)


@dataclass
class StringCollector:
    """Accumulates (path, string) pairs under the caps; shared by the format readers."""

    limit: int = DEFAULT_MAX_STRINGS
    found: dict[str, dict[str, None]] = field(default_factory=dict)
    total: int = 0
    unread: int = 0
    truncated: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return self.total >= min(self.limit, MAX_STRINGS)

    def add(self, path: str, text: str) -> None:
        if not text.strip():
            return
        if self.full:
            self.truncated = True
            self.unread += 1
            return
        self.total += 1
        self.found.setdefault(render_path(path), {})[text[:MAX_STRING_CHARS]] = None

    def add_all(self, path: str, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(path, text)

    def result(self) -> ArtifactStrings:
        return ArtifactStrings(
            tuple((path, tuple(strings)) for path, strings in self.found.items()),
            self.total,
            self.truncated,
            tuple(self.problems),
            self.unread,
        )
