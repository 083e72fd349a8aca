"""Results cross from the worker as JSON and are rebuilt field by field, never unpickled."""

from __future__ import annotations

import pytest

from mlaudit.core.findings import (
    Confidence,
    Finding,
    Location,
    RuleResult,
    Severity,
    Status,
    result_document,
)
from mlaudit.isolation.transport import (
    ModelInfo,
    ProtocolError,
    decode,
    encode,
    result_from_json,
)


def _result() -> RuleResult:
    finding = Finding(
        "MLA201", "Evasion", "flips", Severity.HIGH, Confidence.MEDIUM,
        Location("model.pkl", None, None, "column a"), "f" * 32, {"rate": 0.5, "n": [1, 2]},
        ("CWE-1039",), ("https://example.org",),
    )
    return RuleResult(
        "MLA201", "Black-box evasion", "robustness", Status.FAILED, 85.0, None,
        {"accuracy": 0.9, "curve": [[0.1, 0.8]], "nan": None}, (finding,), 1.25, 400,
    )


def test_a_result_survives_the_round_trip() -> None:
    result = _result()
    message = decode(encode({"kind": "result", "result": result_document(result)}))
    assert result_from_json(message["result"]) == result


def test_an_errored_result_keeps_its_traceback() -> None:
    errored = RuleResult("MLA201", "Black-box evasion", "robustness", Status.ERROR, None,
                         "ValueError: no", traceback="Traceback (most recent call last):\n")
    assert result_from_json(result_document(errored)) == errored


def test_model_info_round_trip() -> None:
    info = ModelInfo("scikit-learn", "classification", (0, "b"), 3, ("a", "b", "c"))
    assert ModelInfo.from_json(decode(encode({"kind": "m", "m": info.to_json()}))["m"]) == info


@pytest.mark.parametrize(
    "line",
    [b"\x80\x04K\x01.", b"[1, 2]", b'{"no": "kind"}', b"not json"],
)
def test_what_is_not_a_json_message_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(line)


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "pwned"), ("score", "100"), ("findings", {"a": 1}), ("queries", 1.5),
     ("metrics", []), ("traceback", ["not", "text"])],
)
def test_a_forged_field_is_refused(field: str, value: object) -> None:
    document = result_document(_result())
    document[field] = value
    with pytest.raises(ProtocolError):
        result_from_json(document)
