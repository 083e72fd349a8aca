"""Scores, grade, coverage and the gate decision, each explained in the report.

Rule score: 100 minus points per finding by severity, floored at 0. Overall score: the mean of
rule scores weighted by family, over rules that ran. A critical finding caps the overall score
at the top of grade F, because no average may hide "this file runs code when loaded".

Coverage is part of the verdict: a score averages only the rules that ran, so a scan in which
the behavioural rules never ran (a weights-only file, no ``--target``) would otherwise read
"grade A" on the strength of its byte checks alone. The grade therefore says how much was
audited: a partial audit (a selected family none of whose rules ran, or a rule in error) is
graded at most :data:`PARTIAL_GRADE_CAP`, and a failed gate at most
:data:`FAILED_GATE_GRADE_CAP`, so "grade A" always means "everything selected was audited and
the gate passed". The gate itself fails on coverage only where the user asks for it
(``require``), since what must be audited depends on the release.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlaudit.core.findings import Finding, JsonValue, RuleResult, Severity, Status

SEVERITY_POINTS: Mapping[Severity, float] = {
    Severity.INFO: 0.0,
    Severity.LOW: 5.0,
    Severity.MEDIUM: 15.0,
    Severity.HIGH: 40.0,
    Severity.CRITICAL: 100.0,
}
FAMILY_WEIGHTS: Mapping[str, float] = {
    "artifact": 3.0,
    "robustness": 2.0,
    "privacy": 2.0,
    "personal-data": 2.0,
    "code": 1.0,
    "dependencies": 1.0,
    "data-quality": 1.0,
    "serving": 0.5,
}
GRADES: Sequence[tuple[float, str]] = ((90.0, "A"), (80.0, "B"), (70.0, "C"), (60.0, "D"))
CRITICAL_CAP = 59.0
PARTIAL_GRADE_CAP = "B"
FAILED_GATE_GRADE_CAP = "C"
FAIL_ON_CHOICES = ("info", "low", "medium", "high", "critical", "none")


def rule_score(findings: Iterable[Finding]) -> float:
    return max(0.0, 100.0 - sum(SEVERITY_POINTS[f.severity] for f in findings))


def grade_for(score: float) -> str:
    return next((grade for floor, grade in GRADES if score >= floor), "F")


def _ran(result: RuleResult) -> bool:
    return result.status in (Status.PASSED, Status.FAILED)


@dataclass(frozen=True)
class FamilyCoverage:
    """How many of a family's selected rules ran, and why the others did not."""

    family: str
    ran: int
    skipped: int
    errors: int
    reasons: tuple[str, ...]

    @property
    def status(self) -> str:
        if not self.ran:
            return "not-audited"
        return "partial" if self.skipped or self.errors else "audited"

    def document(self) -> dict[str, JsonValue]:
        return {
            "family": self.family,
            "status": self.status,
            "ran": self.ran,
            "skipped": self.skipped,
            "error": self.errors,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Coverage:
    """What the audit covered: rules that ran out of those selected, family by family."""

    families: tuple[FamilyCoverage, ...]

    @property
    def ran(self) -> int:
        return sum(f.ran for f in self.families)

    @property
    def skipped(self) -> int:
        return sum(f.skipped for f in self.families)

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.families)

    @property
    def selected(self) -> int:
        return self.ran + self.skipped + self.errors

    @property
    def not_audited(self) -> tuple[FamilyCoverage, ...]:
        return tuple(f for f in self.families if f.status == "not-audited")

    @property
    def complete(self) -> bool:
        """Every selected family had a rule that ran, and no rule is in error."""
        return not self.errors and not self.not_audited

    def summary(self) -> str:
        """One line: ``7 of 23 rules ran; not audited: robustness, privacy``."""
        line = f"{self.ran} of {self.selected} rules ran"
        if self.errors:
            line += f", {self.errors} in error"
        if self.not_audited:
            line += "; not audited: " + ", ".join(f.family for f in self.not_audited)
        return line

    def document(self) -> dict[str, JsonValue]:
        return {
            "complete": self.complete,
            "summary": self.summary(),
            "rules": {
                "selected": self.selected,
                "ran": self.ran,
                "skipped": self.skipped,
                "error": self.errors,
            },
            "families": [f.document() for f in self.families],
            "not_audited": [f.family for f in self.not_audited],
        }


def coverage_of(results: Sequence[RuleResult]) -> Coverage:
    """Coverage of the selected rules (every selected rule has a result, skipped or not)."""
    families: dict[str, list[RuleResult]] = {}
    for result in results:
        families.setdefault(result.family, []).append(result)
    return Coverage(
        tuple(
            FamilyCoverage(
                family,
                ran=sum(_ran(r) for r in members),
                skipped=sum(r.status is Status.SKIPPED for r in members),
                errors=sum(r.status is Status.ERROR for r in members),
                # One line per distinct reason: 16 rules skipped for want of a loaded model
                # say so once, with the rules that share it.
                reasons=_reasons(m for m in members if not _ran(m)),
            )
            for family, members in families.items()
        ),
    )


def _reasons(results: Iterable[RuleResult]) -> tuple[str, ...]:
    by_reason: dict[str, list[str]] = {}
    for result in results:
        why = result.reason or result.status.value
        by_reason.setdefault(f"{result.status.value}: {why}", []).append(result.rule_id)
    return tuple(f"{', '.join(ids)} {why}" for why, ids in by_reason.items())


@dataclass(frozen=True)
class Scorecard:
    score: float
    grade: str
    explanation: dict[str, JsonValue]

    def capped(self, gate: GateDecision, coverage: Coverage) -> Scorecard:
        """The grade the report shows: at most B for a partial audit, C for a failed gate.

        The score stays what the rules earned (``--min-score`` and baselines compare it);
        the grade, the one-glance verdict, may not claim more than was audited and passed.
        """
        caps: list[JsonValue] = []
        grade = self.grade
        for applies, cap, why in (
            (not coverage.complete, PARTIAL_GRADE_CAP, f"partial audit: {coverage.summary()}"),
            (not gate.passed, FAILED_GATE_GRADE_CAP, "the gate failed"),
        ):
            if applies and _grade_rank(grade) < _grade_rank(cap):
                grade = cap
                caps.append({"grade": cap, "reason": why})
        explanation: dict[str, JsonValue] = {
            **self.explanation,
            "grade_caps": {
                "partial_audit": PARTIAL_GRADE_CAP,
                "gate_failed": FAILED_GATE_GRADE_CAP,
            },
            "grade_caps_applied": caps,
        }
        return Scorecard(self.score, grade, explanation)


def _grade_rank(grade: str) -> int:
    """0 for A, the best grade; F last."""
    return [g for _, g in GRADES].index(grade) if grade != "F" else len(GRADES)


def score_results(results: Sequence[RuleResult]) -> Scorecard:
    scored = [r for r in results if r.status in (Status.PASSED, Status.FAILED)]
    deductions: list[JsonValue] = [
        {
            "rule_id": f.rule_id,
            "fingerprint": f.fingerprint,
            "severity": f.severity.value,
            "points": SEVERITY_POINTS[f.severity],
        }
        for r in scored
        for f in r.findings
        if SEVERITY_POINTS[f.severity] > 0
    ]
    weight_total = sum(FAMILY_WEIGHTS[r.family] for r in scored)
    if weight_total:
        weighted = sum(FAMILY_WEIGHTS[r.family] * (r.score or 0.0) for r in scored)
        score = round(weighted / weight_total, 1)
    else:
        score = 100.0
    capped = any(f.severity is Severity.CRITICAL for r in scored for f in r.findings)
    if capped:
        score = min(score, CRITICAL_CAP)
    explanation: dict[str, JsonValue] = {
        "method": "rule score = 100 - points per finding (floor 0); overall = family-weighted "
        "mean of the scores of rules that ran; any critical finding caps the overall score "
        f"at {CRITICAL_CAP:g}",
        "severity_points": {s.value: p for s, p in SEVERITY_POINTS.items()},
        "family_weights": {family: w for family, w in FAMILY_WEIGHTS.items()},
        "grades": {grade: floor for floor, grade in [*GRADES, (0.0, "F")]},
        "critical_cap_applied": capped,
        "deductions": deductions,
    }
    return Scorecard(score, grade_for(score), explanation)


@dataclass(frozen=True)
class GatePolicy:
    fail_on: str = "high"
    min_score: float | None = None
    allow_incomplete: bool = False
    # Rule ids or prefixes that must run (``require``, ``--require``).
    require: tuple[str, ...] = ()


class CauseKind(enum.Enum):
    """What made the gate fail, one kind per way :func:`decide_gate` and baselines fail it."""

    FINDING = "finding"  # a finding at or above fail_on
    ERROR = "error"  # a rule in error: the audit is incomplete
    REQUIRED_NOT_RUN = "required-not-run"  # a required rule or prefix was not audited
    REQUIRED_INCOMPLETE = "required-incomplete"  # a required prefix ran, one of its rules errored
    SCORE = "score"  # the score under min_score
    LOAD = "load"  # the model was not loaded, so its behaviour was not audited
    REGRESSION = "regression"  # a metric regressed against the baseline
    # Read back from a report that does not classify its reasons (written before schema
    # 1.3.0) or classifies one in a way this version does not know: shown as its text.
    OTHER = "other"


@dataclass(frozen=True)
class GateCause:
    """One reason the gate failed, as data: renderers link and count by these fields, never
    by the wording of ``text`` (the line the report's ``gate.reasons`` keeps)."""

    kind: CauseKind
    text: str
    rule_id: str | None = None
    severity: Severity | None = None
    fingerprint: str | None = None
    # The rule id or prefix given to ``require`` (required-not-run, required-incomplete).
    required: str | None = None

    def document(self) -> dict[str, JsonValue]:
        return {
            "kind": self.kind.value,
            "text": self.text,
            "rule_id": self.rule_id,
            "severity": self.severity.value if self.severity else None,
            "fingerprint": self.fingerprint,
            "required": self.required,
        }

    @staticmethod
    def from_document(document: Mapping[str, Any]) -> GateCause:
        """A cause as a report holds it. ``mlaudit report`` re-renders archived JSON as it
        finds it, so a value of the wrong type or an unknown name reads as absent."""
        kinds = {kind.value: kind for kind in CauseKind}
        severities = {severity.value: severity for severity in Severity}

        def text(key: str) -> str | None:
            value = document.get(key)
            return value if isinstance(value, str) else None

        return GateCause(
            kinds.get(text("kind") or "", CauseKind.OTHER),
            text("text") or "",
            text("rule_id"),
            severities.get(text("severity") or ""),
            text("fingerprint"),
            text("required"),
        )


def gate_causes(gate: Mapping[str, Any]) -> tuple[GateCause, ...]:
    """The causes of a report's ``gate``; a report without them (schema before 1.3.0) has
    only its reasons' text, each an :attr:`CauseKind.OTHER` cause."""
    causes = gate.get("causes")
    if isinstance(causes, list):
        return tuple(GateCause.from_document(c) for c in causes if isinstance(c, Mapping))
    return tuple(GateCause(CauseKind.OTHER, str(reason)) for reason in gate.get("reasons", []))


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict: it passed when nothing caused it to fail."""

    causes: tuple[GateCause, ...]

    @property
    def passed(self) -> bool:
        return not self.causes

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(cause.text for cause in self.causes)


def decide_gate(
    results: Sequence[RuleResult],
    score: float,
    policy: GatePolicy,
    model_blocked_reason: str | None,
) -> GateDecision:
    """Every reason the gate fails, in a stable order; passing means there were none."""
    causes: list[GateCause] = []
    if policy.fail_on != "none":
        threshold = Severity(policy.fail_on)
        for result in results:
            for f in result.findings:
                if f.severity >= threshold:
                    where = f" ({f.location.pointer})" if f.location.pointer else ""
                    causes.append(GateCause(
                        CauseKind.FINDING,
                        f"{f.rule_id} {f.severity.value}: {f.title}{where} "
                        f"[fail-on {policy.fail_on}]",
                        f.rule_id, f.severity, f.fingerprint,
                    ))
    if policy.min_score is not None and score < policy.min_score:
        causes.append(GateCause(
            CauseKind.SCORE, f"score {score:g} is under the minimum {policy.min_score:g}"
        ))
    errors = [r for r in results if r.status is Status.ERROR]
    if errors and not policy.allow_incomplete:
        for r in errors:
            causes.append(GateCause(
                CauseKind.ERROR,
                f"{r.rule_id} could not complete ({r.reason}); the audit is incomplete",
                r.rule_id,
            ))
    causes.extend(_unmet_requirements(results, policy.require))
    if model_blocked_reason is not None:
        causes.append(GateCause(
            CauseKind.LOAD,
            "the model was not loaded, so its behaviour was not audited: " + model_blocked_reason,
        ))
    return GateDecision(tuple(causes))


def _unmet_requirements(
    results: Sequence[RuleResult], require: Sequence[str]
) -> list[GateCause]:
    """Why each ``require`` entry is not met.

    A rule id must itself run. A prefix (``MLA2``) names a family of rules that apply to
    different models (MLA203 only to tree ensembles): it is met when at least one of its
    selected rules ran and none is in error.
    """
    causes = []
    for wanted in dict.fromkeys(r.upper() for r in require):
        matching = [r for r in results if r.rule_id.startswith(wanted)]
        not_run = [r for r in matching if not _ran(r)]
        exact = any(r.rule_id == wanted for r in matching)
        if not matching:
            causes.append(GateCause(
                CauseKind.REQUIRED_NOT_RUN,
                f"required {wanted} was not audited: no selected rule matches it",
                required=wanted,
            ))
        elif (exact and not_run) or not any(map(_ran, matching)):
            detail = "; ".join(f"{r.rule_id} {r.status.value}: {r.reason}" for r in not_run)
            causes.append(GateCause(
                CauseKind.REQUIRED_NOT_RUN, f"required {wanted} was not audited ({detail})",
                required=wanted,
            ))
        elif errors := [r for r in not_run if r.status is Status.ERROR]:
            detail = "; ".join(f"{r.rule_id}: {r.reason}" for r in errors)
            causes.append(GateCause(
                CauseKind.REQUIRED_INCOMPLETE, f"required {wanted} did not complete ({detail})",
                required=wanted,
            ))
    return causes
