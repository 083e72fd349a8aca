"""Waivers: a named person accepts a finding, for a reason, until a date.

``[[tool.mlaudit.waivers]]`` tables (``[[waivers]]`` in ``mlaudit.toml``)::

    [[waivers]]
    fingerprint = "3f9c..."        # one finding, or
    # rule = "MLA105"              # every finding of a rule,
    # artifact = "models/*.joblib" # optionally only in artifacts matching this glob
    model = "models/churn-*.joblib" # the model it is for: a path glob or its sha256
    max_severity = "low"           # the highest severity it accepts
    reason = "joblib is what the serving stack loads; the file is signed in transit"
    owner = "ml-platform@example.com"
    expires = 2026-12-31           # a TOML date: the waiver holds through that day

A waiver is scoped: it names the model it was written for and the highest severity it
accepts, so a waiver for a medium finding on one model never hides a high one, on that model
or another. Fingerprints in reports are bound to the model's sha256 (``scope_to_model``), so a
fingerprint waiver copied from a report names one model's finding by construction. Waiver
files written before scoping (no ``model`` or no ``max_severity``) keep working as they did,
on any model and at any severity, and every run says so in a warning until they are scoped.

Waivers apply after the rules run and before scoring and the gate. A waived finding is not
dropped: it moves to the report's ``suppressed`` list beside the waiver that covers it, so a
reader sees what was accepted and by whom. An expired waiver suppresses nothing (the finding
counts again) and is reported as expired; a waiver that matched nothing is reported as unused,
so stale waivers do not pile up unnoticed.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fnmatch import fnmatchcase
from typing import Any

from mlaudit.core.errors import ConfigError
from mlaudit.core.findings import (
    RULE_ID,
    Finding,
    JsonValue,
    ModelIdentity,
    RuleResult,
    Severity,
    Status,
    scope_to_model,
)
from mlaudit.verdict.scoring import rule_score

# What `mlaudit baseline` writes where a person must decide; left in place it is a config
# error, so a drafted file cannot silently waive everything.
PLACEHOLDER = "TODO"
DRAFT_LIFETIME = timedelta(days=90)
_FINGERPRINT = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = frozenset(
    {"fingerprint", "rule", "artifact", "model", "max_severity", "reason", "owner", "expires"}
)


class WaiverStatus(enum.Enum):
    APPLIED = "applied"
    UNUSED = "unused"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Waiver:
    """One accepted finding (by fingerprint) or class of findings (by rule, optional artifact)."""

    reason: str
    fingerprint: str | None = None
    rule: str | None = None
    # A glob (fnmatch, case-sensitive) on the finding's location.artifact, only with ``rule``.
    artifact: str | None = None
    owner: str | None = None
    expires: date | None = None
    # The model it is for: a sha256 (exactly that file) or a glob on the model's reference.
    model: str | None = None
    max_severity: Severity | None = None

    def matches(self, finding: Finding, model: ModelIdentity | None = None) -> bool:
        """Whether this waiver covers ``finding`` of ``model`` (None: a model-free check)."""
        if self.max_severity is not None and finding.severity > self.max_severity:
            return False
        if self.model is not None and model is not None and not self._names(model):
            return False
        if self.fingerprint is not None:
            return self.fingerprint in finding.fingerprints
        if finding.rule_id != self.rule:
            return False
        return self.artifact is None or fnmatchcase(finding.location.artifact, self.artifact)

    def _names(self, model: ModelIdentity) -> bool:
        assert self.model is not None
        if _SHA256.match(self.model):
            return model.sha256 == self.model
        return fnmatchcase(model.reference, self.model)

    @property
    def unscoped(self) -> str | None:
        """Why this waiver may cover more than intended, if it is not fully scoped."""
        missing = [
            key for key, value in (("model", self.model), ("max_severity", self.max_severity))
            if value is None
        ]
        if not missing:
            return None
        named = f"fingerprint {self.fingerprint}" if self.fingerprint else f"rule {self.rule}"
        return (
            f"waiver for {named} names no {' and no '.join(missing)}: it applies to "
            f"{'any model' if self.model is None else 'this model'} at "
            f"{'any severity' if self.max_severity is None else 'up to ' + self.max_severity.value}"
            "; add model = \"<path glob or sha256>\" and max_severity = \"<severity>\" so it "
            "cannot hide another model's or a worse finding"
        )

    def expired(self, today: date) -> bool:
        """Valid through the day it names: a waiver expiring 2026-12-31 holds on that day."""
        return self.expires is not None and today > self.expires

    @property
    def specificity(self) -> int:
        """Which of several matching waivers a suppression is recorded under: the narrowest."""
        if self.fingerprint is not None:
            return 0
        return 1 if self.artifact is not None else 2

    def document(self) -> dict[str, JsonValue]:
        return {
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "artifact": self.artifact,
            "reason": self.reason,
            "owner": self.owner,
            "expires": self.expires.isoformat() if self.expires else None,
            "model": self.model,
            "max_severity": self.max_severity.value if self.max_severity else None,
        }


@dataclass(frozen=True)
class WaiverUse:
    """A configured waiver and what it did in this run; ``matched`` counts findings it covers
    (for an expired waiver: the findings it would have covered)."""

    waiver: Waiver
    status: WaiverStatus
    matched: int

    def document(self) -> dict[str, JsonValue]:
        return {
            **self.waiver.document(),
            "status": self.status.value,
            "matched": self.matched,
            "warning": self.waiver.unscoped,
        }


@dataclass(frozen=True)
class Suppression:
    finding: Finding
    waiver: Waiver


@dataclass(frozen=True)
class WaiverOutcome:
    results: tuple[RuleResult, ...]
    suppressed: tuple[Suppression, ...] = ()
    uses: tuple[WaiverUse, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per waiver that is not scoped to a model and a severity."""
        return tuple(u.waiver.unscoped for u in self.uses if u.waiver.unscoped)


def _text(table: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: {key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    if value.strip().startswith(PLACEHOLDER):
        raise ConfigError(
            f"{where}: {key} is still the {PLACEHOLDER} placeholder from `mlaudit baseline`; "
            "fill it in or delete the waiver"
        )
    return value.strip()


def _parse_one(table: Any, where: str) -> Waiver:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    fingerprint = _text(table, "fingerprint", where)
    rule = _text(table, "rule", where)
    artifact = _text(table, "artifact", where)
    if (fingerprint is None) == (rule is None):
        raise ConfigError(f"{where}: give either fingerprint or rule (with optional artifact)")
    if fingerprint is not None:
        fingerprint = fingerprint.lower()
        if not _FINGERPRINT.match(fingerprint):
            raise ConfigError(f"{where}: fingerprint must be 32 hex digits, as in the report")
        if artifact is not None:
            raise ConfigError(f"{where}: artifact narrows a rule waiver; a fingerprint is exact")
    if rule is not None:
        rule = rule.upper()
        if not RULE_ID.fullmatch(rule):
            raise ConfigError(
                f"{where}: rule must be a rule id such as MLA105 or a plugin's ACME101, "
                f"not {rule!r}"
            )
    model = _text(table, "model", where)
    if model is not None and re.fullmatch(r"[0-9a-fA-F]{64}", model):
        model = model.lower()
    max_severity = _text(table, "max_severity", where)
    if max_severity is not None and max_severity not in {s.value for s in Severity}:
        raise ConfigError(
            f"{where}: max_severity must be one of {', '.join(s.value for s in Severity)}"
        )
    expires = table.get("expires")
    # tomllib gives a TOML date as datetime.date; a datetime (a subclass) or a quoted string
    # would make "expires on" ambiguous, so only a plain date is accepted.
    if expires is not None and (type(expires) is not date):
        raise ConfigError(f"{where}: expires must be a TOML date such as 2026-12-31 (unquoted)")
    reason = _text(table, "reason", where, required=True)
    assert reason is not None
    return Waiver(
        reason, fingerprint, rule, artifact, _text(table, "owner", where), expires, model,
        Severity(max_severity) if max_severity else None,
    )


def parse_waivers(value: Any, origin: str) -> tuple[Waiver, ...]:
    """The ``waivers`` array of tables from a config file; :class:`ConfigError` says what is
    wrong and with which waiver (counted from 1)."""
    if not isinstance(value, list):
        raise ConfigError(f"{origin}: waivers must be an array of tables ([[waivers]])")
    return tuple(_parse_one(table, f"{origin}: waiver {n}") for n, table in enumerate(value, 1))


def _without(result: RuleResult, dropped: set[str]) -> RuleResult:
    kept = tuple(f for f in result.findings if f.fingerprint not in dropped)
    if len(kept) == len(result.findings):
        return result
    # Re-scored and re-judged the way the engine judges a rule: failed only while a finding
    # of low severity or more remains.
    failed = any(f.severity >= Severity.LOW for f in kept)
    return dataclasses.replace(
        result,
        findings=kept,
        score=rule_score(kept),
        status=Status.FAILED if failed else Status.PASSED,
    )


def apply_waivers(
    results: Sequence[RuleResult],
    waivers: Sequence[Waiver],
    today: date,
    model: ModelIdentity | None = None,
) -> WaiverOutcome:
    """Move every finding an unexpired waiver covers out of the results; say what each did.

    With ``model``, the findings' fingerprints are first bound to it (the returned results
    carry the scoped fingerprints the report records) and waivers naming a model apply only
    to theirs. Without, the results are taken as they are (already scoped, or in tests).
    """
    if model is not None:
        results = scope_to_model(results, model)
    findings = [f for r in results for f in r.findings]
    active = sorted(
        (w for w in waivers if not w.expired(today)), key=lambda w: w.specificity
    )  # sorted() is stable: among equally narrow waivers the first configured wins
    suppressed: list[Suppression] = []
    for finding in findings:
        waiver = next((w for w in active if w.matches(finding, model)), None)
        if waiver is not None:
            suppressed.append(Suppression(finding, waiver))
    uses = []
    for waiver in waivers:
        matched = sum(waiver.matches(f, model) for f in findings)
        if waiver.expired(today):
            status = WaiverStatus.EXPIRED
        else:
            status = WaiverStatus.APPLIED if matched else WaiverStatus.UNUSED
        uses.append(WaiverUse(waiver, status, matched))
    dropped = {s.finding.fingerprint for s in suppressed}
    return WaiverOutcome(
        tuple(_without(r, dropped) for r in results), tuple(suppressed), tuple(uses)
    )


def _comment(text: object) -> str:
    """One comment line: a finding's text must not break out of the comment."""
    return " ".join(str(text).split())


def draft_waivers(
    report: Mapping[str, Any], report_name: str, today: date, *, table: str = "waivers"
) -> str:
    """TOML waivers for every finding of ``report``, with placeholders a person must replace.

    ``table`` is ``waivers`` for mlaudit.toml and ``tool.mlaudit.waivers`` for pyproject.toml.
    Each waiver names one finding by fingerprint (never a whole rule: a draft must not accept
    findings nobody has seen), the report's model and the finding's severity, and expires
    after :data:`DRAFT_LIFETIME`, so an accepted risk is looked at again.
    """
    expires = (today + DRAFT_LIFETIME).isoformat()
    subject_model = (report.get("subject") or {}).get("model") or {}
    model = subject_model.get("sha256") or subject_model.get("path")
    lines = [
        f"# Waivers drafted by `mlaudit baseline` from {_comment(report_name)} on {today}.",
        f"# Replace every {PLACEHOLDER}: a waiver whose reason or owner still starts with "
        f"{PLACEHOLDER} is a configuration error.",
        "# Delete the waivers you do not accept; keep expiry dates short.",
    ]
    seen: set[str] = set()
    for finding in _findings(report.get("results", [])):
        fingerprint = str(finding["fingerprint"])
        if fingerprint in seen:
            continue
        seen.add(fingerprint)
        location = finding.get("location") or {}
        where = location.get("artifact") or ""
        if location.get("pointer"):
            where += f" ({location['pointer']})"
        lines += [
            "",
            f"# {finding['rule_id']} {finding['severity']}: {_comment(finding['title'])}",
            f"#   {_comment(where)}",
            f"[[{table}]]",
            f"fingerprint = {json.dumps(fingerprint)}",
            *([f"model = {json.dumps(model)}"] if model else []),
            f"max_severity = {json.dumps(finding['severity'])}",
            f'reason = "{PLACEHOLDER}: why this finding is acceptable"',
            f'owner = "{PLACEHOLDER}: who answers for it"',
            f"expires = {expires}",
        ]
    return "\n".join(lines) + "\n"


def _findings(results: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    found = [f for r in results for f in r.get("findings", [])]
    return sorted(found, key=lambda f: (str(f["rule_id"]), str(f["fingerprint"])))
