"""The data model every rule, the scorer and every renderer share.

Everything here is frozen: a finding, once made, is evidence and must not change on its way
into the report.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeAlias

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None


# Every rule id, mlaudit's or a plugin's: who owns it (2-8 capital letters), then a number.
RULE_ID = re.compile(r"[A-Z]{2,8}\d{3}")

class _Ordered(enum.Enum):
    """An enum whose members compare by declaration order."""

    @property
    def rank(self) -> int:
        return list(type(self)).index(self)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self.rank >= other.rank


class Family(enum.Enum):
    ARTIFACT = "artifact"
    ROBUSTNESS = "robustness"
    PRIVACY = "privacy"
    PERSONAL_DATA = "personal-data"
    CODE = "code"
    DEPENDENCIES = "dependencies"
    DATA_QUALITY = "data-quality"
    SERVING = "serving"


class Severity(_Ordered):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Confidence(_Ordered):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Status(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"


@dataclass(frozen=True)
class Location:
    """Where a finding points: a file, and inside it a line or a pointer.

    ``pointer`` is format-specific: ``offset 1234`` in a pickle stream, a column name in a
    dataset, ``pkg==1.2`` in a requirement set.
    """

    artifact: str
    line: int | None = None
    column: int | None = None
    pointer: str | None = None


def fingerprint(rule_id: str, artifact_key: str, *keys: str) -> str:
    """A stable identity for a finding, used by baselines and waivers.

    Built from what the finding is about (rule, artifact role, the thing found), never from
    what moves between runs (byte offsets, line numbers, metric values, absolute paths).
    Rules make this unscoped fingerprint; :func:`scope_to_model` then binds it to the model.
    """
    return _digest(rule_id, artifact_key, *keys)


def _digest(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class ModelIdentity:
    """Which model a finding is about: its bytes' sha256, or the reference of a model that
    has no bytes of its own (a ``module:callable`` entry point)."""

    reference: str
    sha256: str | None

    @property
    def key(self) -> str:
        return f"sha256:{self.sha256}" if self.sha256 else f"reference:{self.reference}"


def scope_to_model(results: Iterable[RuleResult], model: ModelIdentity) -> tuple[RuleResult, ...]:
    """Every finding's fingerprint bound to ``model``; the unscoped one is kept beside it.

    The same rule firing on the same pointer of two models is two findings: a waiver or a
    baseline entry written for one model's finding must not cover another model's. The
    unscoped fingerprint lets ``diff`` line up a retrained model's findings with its
    predecessor's, and lets waiver files written before scoping keep matching.
    """
    return tuple(
        replace(
            result,
            findings=tuple(
                replace(
                    f,
                    fingerprint=_digest(f.fingerprint, model.key),
                    unscoped_fingerprint=f.fingerprint,
                )
                for f in result.findings
            ),
        )
        for result in results
    )


@dataclass(frozen=True)
class Finding:
    rule_id: str
    title: str
    message: str
    severity: Severity
    confidence: Confidence
    location: Location
    fingerprint: str
    evidence: Mapping[str, JsonValue] = field(default_factory=dict)
    cwe: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    # Set by scope_to_model: the rule's own fingerprint, before the model was bound into it.
    unscoped_fingerprint: str | None = None

    @property
    def fingerprints(self) -> frozenset[str]:
        """Both spellings a waiver or a baseline may name this finding by."""
        return frozenset({self.fingerprint, self.unscoped_fingerprint or self.fingerprint})


@dataclass(frozen=True)
class RuleResult:
    rule_id: str
    name: str
    family: str
    status: Status
    score: float | None
    reason: str | None = None
    metrics: Mapping[str, JsonValue] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    duration_s: float = 0.0
    queries: int | None = None
    # For a rule that raised: the formatted traceback, kept for whoever debugs the rule (the
    # report has it; the console shows only ``reason``).
    traceback: str | None = None


def finding_document(finding: Finding) -> dict[str, JsonValue]:
    """A finding as JSON: the report's form, and the worker's when it sends results back."""
    return {
        "rule_id": finding.rule_id,
        "title": finding.title,
        "message": finding.message,
        "severity": finding.severity.value,
        "confidence": finding.confidence.value,
        "location": {
            "artifact": finding.location.artifact,
            "line": finding.location.line,
            "column": finding.location.column,
            "pointer": finding.location.pointer,
        },
        "evidence": dict(finding.evidence),
        "fingerprint": finding.fingerprint,
        "unscoped_fingerprint": finding.unscoped_fingerprint,
        "cwe": list(finding.cwe),
        "references": list(finding.references),
    }


def result_document(
    result: RuleResult, controls: Sequence[str] = ()
) -> dict[str, JsonValue]:
    """A rule's result as JSON: the report's form (with the controls it is evidence for), and
    the worker's when it sends results back."""
    return {
        "rule_id": result.rule_id,
        "name": result.name,
        "family": result.family,
        "status": result.status.value,
        "score": result.score,
        "reason": result.reason,
        "metrics": dict(result.metrics),
        "findings": [finding_document(f) for f in result.findings],
        "duration_s": round(result.duration_s, 3),
        "queries": result.queries,
        "controls": list(controls),
        "traceback": result.traceback,
    }
