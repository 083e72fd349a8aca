"""What changed between two reports: findings by fingerprint, and metrics beyond tolerances.

``mlaudit diff OLD NEW`` prints it; ``scan --baseline approved.json`` gates on it, so a release
train can adopt mlaudit without first fixing every finding of the model it already ships.

A regression is:
- a finding that is new, or whose severity rose, at or above the fail-on severity;
- a membership-inference AUC or TPR-at-FPR that rose by more than its tolerance;
- a robust accuracy, at the rule's judged ε, that fell by more than its tolerance.

Metrics are compared statistically: each is measured with a confidence interval, and a retrain
with another seed moves it by about that much by chance alone (an AUC of 0.773 with ±0.07 may
well be 0.846 next time). A metric regresses only when the change, less its own uncertainty,
still exceeds the tolerance: the uncertainty of a difference of two independent estimates is
the root sum of squares of the two half-widths on the sides that face each other (the old
interval's upper side and the new one's lower side, for a metric where higher is worse),
which keeps the two intervals' confidence level for the difference. Metrics without an
interval (older reports) are compared on their estimates alone.

Metrics are compared only where both reports measured them: a rule that ran in one report
and not the other is listed, not judged (a rule that errors fails the gate by itself).

Findings are lined up by their unscoped fingerprint (the rule's, before the model was bound
into it), so ``diff`` follows a finding from one model to its retrained successor. A baseline
excuses findings only of the model it was taken of: another model's findings are its own and
gate again (waivers scoped by a model glob carry accepted risks across retrains).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlaudit.config import Tolerances
from mlaudit.core.errors import InputError
from mlaudit.core.findings import JsonValue, ModelIdentity, RuleResult, Severity, result_document
from mlaudit.reports.build import parse_report
from mlaudit.verdict.scoring import CauseKind, GateCause, GateDecision, GatePolicy, decide_gate

# Rules whose findings are known vulnerabilities in the dependency set, listed on their own.
VULNERABILITY_RULES = frozenset({"MLA601"})


class MetricKind(enum.Enum):
    MEMBERSHIP_AUC = "membership-auc"
    MEMBERSHIP_TPR = "membership-tpr"
    ROBUST_ACCURACY = "robust-accuracy"

    @property
    def higher_is_worse(self) -> bool:
        return self is not MetricKind.ROBUST_ACCURACY

    def tolerance(self, tolerances: Tolerances) -> float:
        return {
            MetricKind.MEMBERSHIP_AUC: tolerances.membership_auc,
            MetricKind.MEMBERSHIP_TPR: tolerances.membership_tpr,
            MetricKind.ROBUST_ACCURACY: tolerances.robust_accuracy,
        }[self]


@dataclass(frozen=True)
class Measured:
    """A metric's estimate and how far its interval reaches below and above it (0: none)."""

    estimate: float
    below: float = 0.0
    above: float = 0.0


@dataclass(frozen=True)
class MetricChange:
    rule_id: str
    kind: MetricKind
    metric: str  # where in the rule's metrics, e.g. "tpr_at_fpr@0.01"
    before: Measured
    after: Measured
    tolerance: float

    @property
    def old(self) -> float:
        return self.before.estimate

    @property
    def new(self) -> float:
        return self.after.estimate

    @property
    def worsened_by(self) -> float:
        return self.new - self.old if self.kind.higher_is_worse else self.old - self.new

    @property
    def uncertainty(self) -> float:
        """How much of ``worsened_by`` chance alone explains, at the intervals' confidence."""
        if self.kind.higher_is_worse:
            facing = (self.before.above, self.after.below)
        else:
            facing = (self.before.below, self.after.above)
        return math.hypot(*facing)

    @property
    def regressed(self) -> bool:
        # A hair of slack so that a change exactly at the tolerance is not a regression
        # because of float rounding.
        return self.worsened_by - self.uncertainty > self.tolerance + 1e-12

    def reason(self) -> str:
        return (
            f"{self.rule_id} {self.metric}: {self.old:.4g} -> {self.new:.4g} "
            f"(worse by {self.worsened_by:.4g}, beyond its uncertainty "
            f"{self.uncertainty:.4g} and tolerance {self.tolerance:g})"
        )

    def document(self) -> dict[str, JsonValue]:
        return {
            "rule_id": self.rule_id,
            "kind": self.kind.value,
            "metric": self.metric,
            "old": self.old,
            "new": self.new,
            "uncertainty": self.uncertainty,
            "tolerance": self.tolerance,
            "regressed": self.regressed,
        }


@dataclass(frozen=True)
class Worsened:
    old: Mapping[str, Any]
    new: Mapping[str, Any]


@dataclass(frozen=True)
class Comparison:
    new: tuple[Mapping[str, Any], ...]
    fixed: tuple[Mapping[str, Any], ...]
    unchanged: tuple[Mapping[str, Any], ...]
    worsened: tuple[Worsened, ...]
    metrics: tuple[MetricChange, ...]
    not_compared: tuple[str, ...]  # rule ids that ran in only one of the reports
    fail_on: str

    def _gating(self, finding: Mapping[str, Any]) -> bool:
        return self.fail_on != "none" and Severity(finding["severity"]) >= Severity(self.fail_on)

    @property
    def new_vulnerabilities(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(f for f in self.new if f["rule_id"] in VULNERABILITY_RULES)

    @property
    def known_keys(self) -> frozenset[str]:
        """Findings the baseline already had at the same or a higher severity (match keys)."""
        return frozenset(match_key(f) for f in self.unchanged)

    @property
    def metric_regressions(self) -> tuple[MetricChange, ...]:
        return tuple(m for m in self.metrics if m.regressed)

    @property
    def regressions(self) -> tuple[str, ...]:
        reasons = [f"new {_describe(f)}" for f in self.new if self._gating(f)]
        reasons += [
            f"worse {w.new['rule_id']} {w.old['severity']} -> {w.new['severity']}: "
            f"{w.new['title']}"
            for w in self.worsened
            if self._gating(w.new)
        ]
        return (*reasons, *(m.reason() for m in self.metric_regressions))

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def document(self) -> dict[str, JsonValue]:
        return {
            "fail_on": self.fail_on,
            "regressed": self.regressed,
            "regressions": list(self.regressions),
            "findings": {
                "new": [dict(f) for f in self.new],
                "fixed": [dict(f) for f in self.fixed],
                "worsened": [
                    {"old_severity": w.old["severity"], "finding": dict(w.new)}
                    for w in self.worsened
                ],
                "unchanged": [dict(f) for f in self.unchanged],
            },
            "new_vulnerabilities": [dict(f) for f in self.new_vulnerabilities],
            "metrics": [m.document() for m in self.metrics],
            "not_compared": list(self.not_compared),
        }


def _describe(finding: Mapping[str, Any]) -> str:
    pointer = (finding.get("location") or {}).get("pointer")
    where = f" ({pointer})" if pointer else ""
    return f"{finding['rule_id']} {finding['severity']}: {finding['title']}{where}"


def match_key(finding: Mapping[str, Any]) -> str:
    """A finding's model-independent identity (reports before scoping have only one)."""
    return str(finding.get("unscoped_fingerprint") or finding["fingerprint"])


def _findings(results: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {match_key(f): f for r in results for f in r.get("findings", [])}


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _estimate(value: object) -> Measured | None:
    """The estimate of an interval metric, with its interval's reach where recorded."""
    if not isinstance(value, Mapping):
        return None
    estimate = _number(value.get("estimate"))
    if estimate is None:
        return None
    low, high = _number(value.get("low")), _number(value.get("high"))
    return Measured(
        estimate,
        below=max(0.0, estimate - low) if low is not None else 0.0,
        above=max(0.0, high - estimate) if high is not None else 0.0,
    )


def _membership_metrics(
    metrics: Mapping[str, Any],
) -> Iterator[tuple[MetricKind, str, Measured]]:
    """The headline (strongest attack's) AUC and each evaluable TPR at a fixed FPR."""
    auc = _estimate(metrics.get("auc"))
    if auc is not None:
        yield MetricKind.MEMBERSHIP_AUC, "auc", auc
    points = metrics.get("tpr_at_fpr")
    for point in points if isinstance(points, list) else []:
        tpr = _estimate(point)
        if tpr is not None and isinstance(point, Mapping) and point.get("evaluable", True):
            yield MetricKind.MEMBERSHIP_TPR, f"tpr_at_fpr@{point.get('fpr')}", tpr


def _robust_points(
    value: object, path: str, inside: bool
) -> Iterator[tuple[str, float, Measured]]:
    """Every (path, ε, estimate) on a robust-accuracy curve, however a rule nests its curves
    (per norm, per attack method, certified beside attacked)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            below = f"{path}.{key}" if path else str(key)
            yield from _robust_points(item, below, inside or key == "robust_accuracy")
    elif isinstance(value, list) and inside:
        for point in value:
            estimate = _estimate(point)
            if estimate is not None and isinstance(point, Mapping):
                epsilon = point.get("epsilon")
                if isinstance(epsilon, int | float):
                    yield path, float(epsilon), estimate


def _robustness_metrics(
    metrics: Mapping[str, Any],
) -> Iterator[tuple[MetricKind, str, Measured]]:
    """Robust accuracy at the ε the rule judges by (its ``epsilon`` metric), on every curve."""
    judged = metrics.get("epsilon")
    for path, epsilon, estimate in _robust_points(metrics, "", False):
        if not isinstance(judged, int | float) or math.isclose(epsilon, judged):
            yield MetricKind.ROBUST_ACCURACY, f"{path}@{epsilon:g}", estimate


def _metrics(result: Mapping[str, Any]) -> dict[tuple[MetricKind, str], Measured]:
    metrics = result.get("metrics") or {}
    if result.get("status") not in ("passed", "failed") or not isinstance(metrics, Mapping):
        return {}
    family = result.get("family")
    found = (
        _membership_metrics(metrics) if family == "privacy"
        else _robustness_metrics(metrics) if family == "robustness"
        else iter(())
    )
    return {(kind, name): value for kind, name, value in found}


def compare(
    old_results: Sequence[Mapping[str, Any]],
    new_results: Sequence[Mapping[str, Any]],
    tolerances: Tolerances,
    fail_on: str,
) -> Comparison:
    """Compare two reports' ``results`` lists (as in report.json)."""
    old, new = _findings(old_results), _findings(new_results)
    unchanged, worsened = [], []
    for fingerprint in old.keys() & new.keys():
        before, after = old[fingerprint], new[fingerprint]
        if Severity(after["severity"]) > Severity(before["severity"]):
            worsened.append(Worsened(before, after))
        else:
            unchanged.append(after)
    old_metrics = {str(r["rule_id"]): _metrics(r) for r in old_results}
    new_metrics = {str(r["rule_id"]): _metrics(r) for r in new_results}
    changes = []
    for rule_id, measured in new_metrics.items():
        previous = old_metrics.get(rule_id, {})
        for (kind, name), value in measured.items():
            if (kind, name) in previous:
                tolerance = kind.tolerance(tolerances)
                changes.append(
                    MetricChange(rule_id, kind, name, previous[kind, name], value, tolerance)
                )
    measured_old = {rule_id for rule_id, m in old_metrics.items() if m}
    measured_new = {rule_id for rule_id, m in new_metrics.items() if m}
    order = _order(new_results)
    return Comparison(
        new=tuple(sorted((new[k] for k in new.keys() - old.keys()), key=order)),
        fixed=tuple(sorted((old[k] for k in old.keys() - new.keys()), key=_order(old_results))),
        unchanged=tuple(sorted(unchanged, key=order)),
        worsened=tuple(sorted(worsened, key=lambda w: order(w.new))),
        metrics=tuple(sorted(changes, key=lambda m: (m.rule_id, m.metric))),
        not_compared=tuple(sorted(measured_old ^ measured_new)),
        fail_on=fail_on,
    )


def _order(results: Sequence[Mapping[str, Any]]) -> Any:
    """Sort key: the report's own order of rules, then severity (worst first), fingerprint."""
    rank = {str(r["rule_id"]): n for n, r in enumerate(results)}

    def key(finding: Mapping[str, Any]) -> tuple[int, int, str]:
        return (
            rank.get(str(finding["rule_id"]), len(rank)),
            -Severity(finding["severity"]).rank,
            str(finding["fingerprint"]),
        )

    return key


@dataclass(frozen=True)
class Baseline:
    """The approved report a scan is gated against, and the digest the new report records."""

    path: Path
    sha256: str
    report: Mapping[str, Any]

    @staticmethod
    def read(path: Path) -> Baseline:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InputError(f"cannot read report {path}: {error.strerror}") from None
        # One read: the digest recorded is that of the bytes the gate compared against.
        return Baseline(path, hashlib.sha256(data).hexdigest(), parse_report(data, path))

    @property
    def model(self) -> ModelIdentity:
        model = self.report["subject"]["model"]
        return ModelIdentity(str(model.get("path")), model.get("sha256"))

    def document(
        self, comparison: Comparison, same_model: bool = True
    ) -> dict[str, JsonValue]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "run_id": self.report["run"].get("id"),
            "model_sha256": self.report["subject"]["model"].get("sha256"),
            "same_model": same_model,
            "score": self.report.get("score"),
            "findings": {
                "new": len(comparison.new),
                "worsened": len(comparison.worsened),
                "fixed": len(comparison.fixed),
                "unchanged": len(comparison.unchanged),
            },
            "regressions": list(comparison.regressions),
        }

    def gate(
        self,
        results: Sequence[RuleResult],
        score: float,
        policy: GatePolicy,
        model_blocked_reason: str | None,
        tolerances: Tolerances,
        *,
        model: ModelIdentity | None = None,
    ) -> tuple[GateDecision, dict[str, JsonValue]]:
        """The gate, counting only what is new or worse than this baseline, and the record of
        the comparison for the report.

        Findings the baseline already had are history and do not gate, if the baseline is
        of this ``model`` (None: not checked): another model's findings excuse nothing. The
        score gates only when it is under the minimum and below the baseline's own. Rule
        errors and a blocked model still fail: they mean this audit is incomplete, which no
        baseline excuses.
        """
        comparison = compare(
            self.report["results"], [result_document(r) for r in results], tolerances,
            policy.fail_on,
        )
        same_model = model is None or model.key == self.model.key
        known = comparison.known_keys if same_model else frozenset()
        fresh = [
            dataclasses.replace(
                r,
                findings=tuple(
                    f for f in r.findings
                    if (f.unscoped_fingerprint or f.fingerprint) not in known
                ),
            )
            for r in results
        ]
        baseline_score = self.report.get("score")
        if isinstance(baseline_score, int | float) and score >= baseline_score:
            policy = dataclasses.replace(policy, min_score=None)
        decision = decide_gate(fresh, score, policy, model_blocked_reason)
        regressions = tuple(
            GateCause(CauseKind.REGRESSION, f"regressed against the baseline: {m.reason()}",
                      m.rule_id)
            for m in comparison.metric_regressions
        )
        return (
            GateDecision((*decision.causes, *regressions)),
            self.document(comparison, same_model),
        )
