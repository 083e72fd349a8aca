"""What crosses from the model worker to the parent: JSON only, never a pickle.

The worker may be running a hostile model, so everything it sends is untrusted input: the
parent decodes it with :func:`json.loads` and rebuilds each value field by field, checking its
type; anything malformed is a :class:`ProtocolError`, which ends that worker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlaudit.core.findings import (
    Confidence,
    Finding,
    JsonValue,
    Location,
    RuleResult,
    Severity,
    Status,
)
from mlaudit.subject.model_info import LoadedModel, json_safe_classes

# One message may hold a rule's metrics (per-sample arrays included), not a flood.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class ProtocolError(Exception):
    """The worker sent something that is not a well-formed message."""


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about the loaded model, as plain values."""

    framework: str
    task: str
    classes: tuple[JsonValue, ...] | None
    n_features: int | None
    feature_names: tuple[str, ...] | None

    @staticmethod
    def of(model: LoadedModel) -> ModelInfo:
        classes = json_safe_classes(model.classes)
        return ModelInfo(
            model.framework,
            model.task.value,
            tuple(_plain(c) for c in classes) if classes is not None else None,
            model.n_features,
            model.feature_names,
        )

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "framework": self.framework,
            "task": self.task,
            "classes": list(self.classes) if self.classes is not None else None,
            "n_features": self.n_features,
            "feature_names": list(self.feature_names) if self.feature_names else None,
        }

    @staticmethod
    def from_json(value: object) -> ModelInfo:
        data = _mapping(value)
        classes = data.get("classes")
        names = data.get("feature_names")
        return ModelInfo(
            _string(data.get("framework")),
            _string(data.get("task")),
            tuple(_list(classes)) if classes is not None else None,
            _optional_int(data.get("n_features")),
            tuple(_string(n) for n in _list(names)) if names is not None else None,
        )


def _plain(value: object) -> JsonValue:
    """A class label as JSON: str, number, bool or null; anything else by its ``str``."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def encode(message: Mapping[str, Any]) -> bytes:
    """One message: a JSON object on one line (NaN allowed, as metrics may hold it)."""
    return json.dumps(message, allow_nan=True, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(f"not JSON: {error}") from None
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise ProtocolError("a message must be an object with a kind")
    return message


def result_from_json(value: object) -> RuleResult:
    data = _mapping(value)
    try:
        status = Status(data.get("status"))
    except ValueError:
        raise ProtocolError(f"unknown status {data.get('status')!r}") from None
    score = data.get("score")
    return RuleResult(
        _string(data.get("rule_id")),
        _string(data.get("name")),
        _string(data.get("family")),
        status,
        _number(score) if score is not None else None,
        _optional_string(data.get("reason")),
        _mapping(data.get("metrics")),
        tuple(_finding_from_json(f) for f in _list(data.get("findings"))),
        _number(data.get("duration_s")),
        _optional_int(data.get("queries")),
        _optional_string(data.get("traceback")),
    )


def _finding_from_json(value: object) -> Finding:
    data = _mapping(value)
    where = _mapping(data.get("location"))
    try:
        severity = Severity(data.get("severity"))
        confidence = Confidence(data.get("confidence"))
    except ValueError as error:
        raise ProtocolError(str(error)) from None
    return Finding(
        _string(data.get("rule_id")),
        _string(data.get("title")),
        _string(data.get("message")),
        severity,
        confidence,
        Location(
            _string(where.get("artifact")),
            _optional_int(where.get("line")),
            _optional_int(where.get("column")),
            _optional_string(where.get("pointer")),
        ),
        _string(data.get("fingerprint")),
        _mapping(data.get("evidence")),
        tuple(_string(c) for c in _list(data.get("cwe"))),
        tuple(_string(r) for r in _list(data.get("references"))),
    )


def _mapping(value: object) -> dict[str, JsonValue]:
    if not isinstance(value, dict):
        raise ProtocolError(f"expected an object, got {type(value).__name__}")
    return value


def _list(value: object) -> list[JsonValue]:
    if not isinstance(value, list):
        raise ProtocolError(f"expected a list, got {type(value).__name__}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"expected a string, got {type(value).__name__}")
    return value


def _optional_string(value: object) -> str | None:
    return None if value is None else _string(value)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"expected an integer, got {type(value).__name__}")
    return value
