"""What a format scanner reports: issues for the MLA1xx rules and the pickles it found inside.

Every format scanner (archives, PyTorch, NumPy, compressed joblib, Keras, ONNX, safetensors,
model folders) returns a :class:`FormatReport`. The inventory merges them, the MLA1xx rules turn
them into findings, and the load gate reads the same merged report, so no scanner talks to the
rules or the gate directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.scanners.pickle import PickleScan

# Limits that keep a hostile file from exhausting the scanner. Each is a finding when hit.
MAX_DECOMPRESSED_BYTES = 32 * 1024**3
MAX_COMPRESSION_RATIO = 200.0
MAX_ARCHIVE_MEMBERS = 100_000
MAX_JSON_HEADER_BYTES = 100 * 1024**2


@dataclass(frozen=True)
class ArtifactIssue:
    """One problem found in a model file's structure, for rule ``rule_id`` to report.

    ``key`` identifies the issue stably across runs (it feeds the fingerprint): the kind of
    problem and the name it concerns, never a byte offset.
    """

    rule_id: str
    key: str
    title: str
    message: str
    severity: Severity
    member: str | None = None
    pointer: str | None = None
    evidence: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddedPickle:
    """A pickle stream found inside the artifact, at ``member`` (None: the file itself)."""

    member: str | None
    scan: PickleScan


@dataclass(frozen=True)
class DeclaredType:
    """A type a non-pickle format asks its loader to import (skops' untrusted types)."""

    member: str | None
    qualified_name: str


@dataclass(frozen=True)
class FormatReport:
    format_detail: str
    issues: tuple[ArtifactIssue, ...] = ()
    pickles: tuple[EmbeddedPickle, ...] = ()
    members: int = 0
    declared_types: tuple[DeclaredType, ...] = ()

    def merged(self, other: FormatReport) -> FormatReport:
        return FormatReport(
            self.format_detail,
            self.issues + other.issues,
            self.pickles + other.pickles,
            self.members + other.members,
            self.declared_types + other.declared_types,
        )


MAX_ISSUES_PER_RULE = 200


class IssueCollector:
    """Issues deduplicated by (rule, key) and capped per rule, with one summary per capped rule.

    A hostile file can repeat one defect millions of times; the report needs each distinct
    issue once and the count of the rest, not a finding per repetition.
    """

    def __init__(self) -> None:
        self._items: list[ArtifactIssue] = []
        self._keys: set[tuple[str, str]] = set()
        self._counts: dict[str, int] = {}
        self._dropped: dict[str, tuple[int, Severity]] = {}

    def add(self, issue: ArtifactIssue) -> None:
        identity = (issue.rule_id, issue.key)
        if identity in self._keys:
            return
        self._keys.add(identity)
        count = self._counts.get(issue.rule_id, 0)
        if count >= MAX_ISSUES_PER_RULE:
            dropped, worst = self._dropped.get(issue.rule_id, (0, Severity.INFO))
            self._dropped[issue.rule_id] = (dropped + 1, max(worst, issue.severity))
            return
        self._counts[issue.rule_id] = count + 1
        self._items.append(issue)

    def result(self) -> tuple[ArtifactIssue, ...]:
        summaries = [
            ArtifactIssue(
                rule, f"{rule.lower()}:more-issues", "More issues not listed",
                f"{dropped} more issues of this kind were found and not listed",
                worst, evidence={"not_listed": dropped},
            )
            for rule, (dropped, worst) in sorted(self._dropped.items())
        ]
        return (*self._items, *summaries)
