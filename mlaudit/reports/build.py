"""Assemble the report: the JSON document every renderer reads (schema in ``reports/``).

Key order is fixed here and nowhere else, so two runs on the same inputs with the same seed
produce the same document apart from times, durations and the run id.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from mlaudit.config import Settings
from mlaudit.core.errors import InputError
from mlaudit.core.findings import JsonValue, RuleResult, Status, finding_document, result_document
from mlaudit.core.version import __version__
from mlaudit.engine.registry import registered_rules
from mlaudit.engine.run import PROFILE_BUDGETS_S, AuditRun, ModelSource
from mlaudit.pii.redact import report_labels
from mlaudit.rules.controls import catalogue_order, control
from mlaudit.subject.build import Subject
from mlaudit.subject.data import Dataset
from mlaudit.verdict.scoring import Coverage, GateDecision, Scorecard, coverage_of
from mlaudit.verdict.waivers import WaiverOutcome

# 1.1.0: controls per result and per control, suppressed findings, waivers, baseline, the
# version of each rule's distribution (tool.rules), tolerances in run.config.
# 1.2.0: run.isolation (the mode, each isolation layer in force or not, notes).
# 1.3.0: plugin rule ids (their own 2-8 letter prefix); subject.model.source (file, entry-point,
# in-memory) and subject.model.type (an in-memory model's class), no format for an in-memory
# model; result.traceback (a rule that raised); gate.causes (each reason as data).
# 1.4.0: data roles reference and current, a data file's sampling; the native tree formats
# (xgboost-json, xgboost-ubj, lightgbm-text, catboost); run.config's load options (model_class,
# model_kwargs, model_output, text_column) and cluster (dask_scheduler, workers).
SCHEMA_VERSION = "1.4.0"
_MAX_WARNINGS = 50
_RECORDED_LIBRARIES = (
    "numpy", "pandas", "scikit-learn", "joblib", "skops", "onnx", "onnxruntime", "pyarrow",
)


@dataclass(frozen=True)
class RunInfo:
    id: str
    started_at: datetime
    finished_at: datetime
    command: str

    @staticmethod
    def new(started_at: datetime, command: str) -> RunInfo:
        return RunInfo(str(uuid.uuid4()), started_at, datetime.now(UTC), command)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def environment() -> dict[str, JsonValue]:
    libraries: dict[str, JsonValue] = {}
    for name in _RECORDED_LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "libraries": libraries,
    }


@dataclass(frozen=True)
class RuleProvenance:
    """What the report records of a rule beyond its result: the controls it provides evidence
    for, and which distribution and version supplied it (a rule's thresholds and logic are
    those of that version)."""

    controls: tuple[str, ...]
    provider: str | None


def rule_provenance(rule_ids: Sequence[str]) -> dict[str, RuleProvenance]:
    """Looked up in the installed rules: the ones that just ran, so all of them import."""
    wanted = set(rule_ids)
    found = {}
    for registered in registered_rules():
        if registered.id not in wanted:
            continue
        distribution = registered.entry_point.dist
        provider = f"{distribution.name} {distribution.version}" if distribution else None
        found[registered.id] = RuleProvenance(registered.load().meta.controls, provider)
    return found


def controls_document(
    results: Sequence[dict[str, Any]], suppressed: Sequence[dict[str, Any]]
) -> dict[str, JsonValue]:
    """Per control: the rules that provide evidence for it, their outcomes and findings.

    ``waived`` counts suppressed findings of those rules; they do not count as findings.
    """
    by_control: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        for control_id in result["controls"]:
            by_control.setdefault(control_id, []).append(result)
    document: dict[str, JsonValue] = {}
    for control_id in catalogue_order(set(by_control)):
        entry = control(control_id)
        cited = by_control[control_id]
        statuses = [r["status"] for r in cited]
        rule_ids = [r["rule_id"] for r in cited]
        document[control_id] = {
            "framework": entry.framework if entry else None,
            "title": entry.title if entry else None,
            "rules": rule_ids,
            **{status.value: statuses.count(status.value) for status in Status},
            "findings": sum(len(r["findings"]) for r in cited),
            "waived": sum(s["finding"]["rule_id"] in rule_ids for s in suppressed),
        }
    return document


def _dataset_document(dataset: Dataset) -> dict[str, JsonValue]:
    return {
        "role": dataset.role,
        "path": str(dataset.path),
        "sha256": dataset.sha256,
        "rows": dataset.file_rows,
        "columns": list(dataset.columns),
        "target": dataset.target,
        **({"sampling": dict(dataset.sampling.document())} if dataset.sampling else {}),
    }


def subject_document(subject: Subject, audit: AuditRun) -> dict[str, JsonValue]:
    model = audit.model
    load: dict[str, JsonValue] = {
        "status": audit.load.status.value if audit.load else "not-needed",
        "reasons": list(audit.load.reasons) if audit.load else [],
    }
    classes = None
    if model is not None and model.classes is not None:
        # Class labels can be people's names: masked when a personal-data rule says so.
        classes = report_labels(list(model.classes), audit.results)
    return {
        "model": {
            "path": subject.model.reference,
            "source": audit.source.value,
            "type": audit.model_type,
            "sha256": subject.model.sha256,
            "size": subject.model.size,
            # An in-memory model's subject has a stand-in format: it was never a file.
            "format": (
                None if audit.source is ModelSource.IN_MEMORY else subject.model.format.value
            ),
            "framework": model.framework if model else None,
            "task": model.task if model else None,
            "classes": classes,  # type: ignore[dict-item]
            "n_features": model.n_features if model else None,
            "feature_names": list(model.feature_names) if model and model.feature_names else None,
            "load": load,
        },
        "data": [_dataset_document(d) for d in subject.datasets],
        "source": str(subject.source) if subject.source else None,
        "requirements": [str(r) for r in subject.requirements],
    }


def _settings_document(settings: Settings) -> dict[str, JsonValue]:
    return {
        "fail_on": settings.fail_on,
        "min_score": settings.min_score,
        "allow_incomplete": settings.allow_incomplete,
        "exit_zero": settings.exit_zero,
        "trust_model": settings.trust_model,
        "select": list(settings.select),
        "ignore": list(settings.ignore),
        "require": list(settings.require),
        "allow_globals": list(settings.allow_globals),
        "rules": {k: dict(v) for k, v in sorted(settings.rules.items())},
        "baseline": settings.baseline,
        "tolerances": dataclasses.asdict(settings.tolerances),
        "config_file": settings.config_file,
        "model_class": settings.model_class,
        "model_kwargs": dict(settings.model_kwargs),
        "model_output": settings.model_output,
        "text_column": settings.text_column,
        "dask_scheduler": settings.dask_scheduler,
        "workers": settings.workers,
    }


# What a pass at each profile may be taken for; quick's budgets are too small to clear a model.
PROFILE_NOTES = {
    "quick": "profile quick is a smoke test: it checks that every rule can run, with budgets "
    "and reference models too few to clear a model; a pass at quick is not a release "
    "verdict (use standard or thorough)",
}


def coverage_document(coverage: Coverage, profile: str) -> dict[str, JsonValue]:
    """The report's ``coverage``: rules that ran, families not audited and why, notes."""
    notes: list[JsonValue] = [PROFILE_NOTES[profile]] if profile in PROFILE_NOTES else []
    return {**coverage.document(), "notes": notes}


def build_report(
    *,
    run: RunInfo,
    settings: Settings,
    subject: Subject,
    audit: AuditRun,
    scorecard: Scorecard,
    gate: GateDecision,
    results: Sequence[RuleResult],
    warnings: Sequence[str] = (),
    waivers: WaiverOutcome | None = None,
    baseline: dict[str, JsonValue] | None = None,
) -> dict[str, Any]:
    """The report of a run; ``results`` are the results after waivers (``waivers`` says
    which findings they suppressed), ``baseline`` the comparison the gate was decided on.

    The grade shown is capped by coverage and by the gate (:meth:`Scorecard.capped`)."""
    coverage = coverage_of(results)
    scorecard = scorecard.capped(gate, coverage)
    provenance = rule_provenance([r.rule_id for r in results])
    result_documents = [
        result_document(r, provenance[r.rule_id].controls if r.rule_id in provenance else ())
        for r in results
    ]
    suppressed = [
        {"finding": finding_document(s.finding), "waiver": s.waiver.document()}
        for s in (waivers.suppressed if waivers else ())
    ]
    budgets: dict[str, JsonValue] = {
        "rule_time_s": PROFILE_BUDGETS_S[settings.profile],
        "per_rule_overrides": {
            rule_id: options["budget_s"]
            for rule_id, options in sorted(settings.rules.items())
            if "budget_s" in options
        },
    }
    document: dict[str, Any] = _finite({
        "schema_version": SCHEMA_VERSION,
        "tool": {
            "name": "mlaudit",
            "version": __version__,
            "rules": {
                rule_id: provenance[rule_id].provider
                for rule_id in sorted(provenance)
            },
        },
        "run": {
            "id": run.id,
            "started_at": _timestamp(run.started_at),
            "finished_at": _timestamp(run.finished_at),
            "seed": settings.seed,
            "profile": settings.profile,
            "command": run.command,
            "budgets": budgets,
            "config": _settings_document(settings),
            "environment": environment(),
            "isolation": audit.isolation.to_json(),
            "warnings": list(
                dict.fromkeys([*warnings, *(waivers.warnings if waivers else ())])
            )[:_MAX_WARNINGS],
        },
        "subject": subject_document(subject, audit),
        "results": result_documents,
        "score": scorecard.score,
        "grade": scorecard.grade,
        "scoring": scorecard.explanation,
        "gate": {
            "passed": gate.passed,
            "fail_on": settings.fail_on,
            "min_score": settings.min_score,
            "require": list(settings.require),
            "reasons": list(gate.reasons),
            "causes": [cause.document() for cause in gate.causes],
        },
        "coverage": coverage_document(coverage, settings.profile),
        "controls": controls_document(result_documents, suppressed),
        "suppressed": suppressed,
        "waivers": [use.document() for use in (waivers.uses if waivers else ())],
        "baseline": baseline,
    })
    return document


def _finite(value: Any) -> Any:
    """NaN and infinity have no JSON spelling: a metric that is not a number becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


REQUIRED_KEYS = ("schema_version", "tool", "run", "subject", "results", "score", "grade", "gate")


def read_report(path: Path) -> dict[str, Any]:
    """A report written by this major schema version, or an :class:`InputError` saying why."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read report {path}: {error.strerror}") from None
    return parse_report(data, path)


def parse_report(data: bytes, path: Path) -> dict[str, Any]:
    """``read_report`` for bytes already read: whoever signs or hashes a report checks the
    very bytes it uses, not a second read of a file that may have changed in between."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path} is not a JSON report: {error}") from None
    if not isinstance(document, dict):
        raise InputError(f"{path} is not an mlaudit report (not a JSON object)")
    missing = [key for key in REQUIRED_KEYS if key not in document]
    if missing:
        raise InputError(f"{path} is not an mlaudit report (missing {', '.join(missing)})")
    major = str(document["schema_version"]).split(".", 1)[0]
    if major != SCHEMA_VERSION.split(".", 1)[0]:
        raise InputError(
            f"{path} has report schema {document['schema_version']}; this mlaudit reads "
            f"{SCHEMA_VERSION.split('.', 1)[0]}.x"
        )
    return document
