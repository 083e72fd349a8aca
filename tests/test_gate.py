from __future__ import annotations

import pickle
from pathlib import Path

from mlaudit.core.findings import Confidence, Finding, Location, RuleResult, Severity, Status
from mlaudit.loaders.load_gate import LoadStatus, decide
from mlaudit.subject.build import open_model


class Unlisted:
    """A class outside the allowlist (defined in a test module)."""


def write(tmp_path: Path, payload: object) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    return path


def test_plain_data_is_allowed(tmp_path: Path) -> None:
    artifact = open_model(str(write(tmp_path, {"weights": [1.0, 2.0]})))
    decision = decide(artifact, [], trust_model=False)
    assert decision.status is LoadStatus.ALLOWED
    assert decision.may_load


def test_unlisted_import_blocks(tmp_path: Path) -> None:
    artifact = open_model(str(write(tmp_path, Unlisted())))
    decision = decide(artifact, [], trust_model=False)
    assert decision.status is LoadStatus.BLOCKED
    assert decision.reasons[0].startswith("MLA102 tests.test_gate.Unlisted")


def test_allow_globals_extends_the_allowlist(tmp_path: Path) -> None:
    artifact = open_model(
        str(write(tmp_path, Unlisted())), frozenset({"tests.test_gate.Unlisted"})
    )
    assert decide(artifact, [], trust_model=False).may_load


def test_trust_model_overrides_but_keeps_the_reasons(tmp_path: Path) -> None:
    artifact = open_model(str(write(tmp_path, Unlisted())))
    decision = decide(artifact, [], trust_model=True)
    assert decision.status is LoadStatus.TRUSTED
    assert any("MLA102" in reason for reason in decision.reasons)


def test_high_finding_of_any_artifact_rule_blocks(tmp_path: Path) -> None:
    artifact = open_model(str(write(tmp_path, [1, 2])))
    finding = Finding("MLA150", "Plugin says no", "m", Severity.HIGH, Confidence.HIGH,
                      Location("model"), "f" * 32)
    result = RuleResult("MLA150", "A third-party artifact rule", "artifact", Status.FAILED, 60,
                        findings=(finding,))
    decision = decide(artifact, [result], trust_model=False)
    assert decision.status is LoadStatus.BLOCKED
    assert decision.reasons == ("MLA150 Plugin says no",)
