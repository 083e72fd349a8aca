"""MLA401-MLA403 on real data and real models, and redaction across every output.

The rules are run through ``run_audit`` (the entry points are registered separately), with
presidio and scikit-learn for real.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from faker import Faker
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import mlaudit
from mlaudit.core.findings import Finding, RuleResult, Severity, Status
from mlaudit.engine.run import AuditRun, EngineSettings, run_audit
from mlaudit.pii.redact import SALT_ENV, redactor_from
from mlaudit.reports import FORMATS, renderer_for
from mlaudit.reports.console import Output, make_console
from mlaudit.rules.artifact import DangerousPickleImports
from mlaudit.rules.base import Rule
from mlaudit.rules.personal_data import (
    PersonalDataInArtifact,
    PersonalDataInData,
    PersonalDataInOutputs,
)
from mlaudit.subject.build import build_subject

PII_RULES: Sequence[type[Rule]] = (
    PersonalDataInData, PersonalDataInArtifact, PersonalDataInOutputs,
)
PII_RULE_IDS = [rule.meta.id for rule in PII_RULES]
ROWS = 150


@dataclass(frozen=True)
class Files:
    personal: Path
    clean: Path
    rf: Path
    tfidf: Path
    named_classes: Path
    hostile: Path
    planted: tuple[str, ...]


class _HostileWithAddresses:
    """Runs a command when unpickled, and carries e-mail addresses as a model would."""

    def __init__(self, canary: Path, addresses: list[str]) -> None:
        self.canary = canary
        self.addresses = addresses

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.canary}",), {"addresses": self.addresses})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("pii")
    fake = Faker("en_US")
    Faker.seed(7)
    rng = np.random.default_rng(7)
    names = [f"{fake.first_name()} {fake.last_name()}" for _ in range(ROWS)]
    emails = [f"{n.lower().replace(' ', '.')}{i}@{fake.free_email_domain()}"
              for i, n in enumerate(names)]
    phones = [f"({rng.integers(201, 989)}) 555-{rng.integers(1000, 9999)}" for _ in range(ROWS)]
    ssns = [f"{rng.integers(100, 665)}-{rng.integers(10, 99)}-{rng.integers(1000, 9999)}"
            for _ in range(ROWS)]
    notes = [f"Reach {names[i]} by phone {phones[i]}." if i % 3 == 0 else fake.sentence()
             for i in range(ROWS)]
    features = rng.normal(size=(ROWS, 2))
    target = (features[:, 0] > 0).astype(int)
    personal = pd.DataFrame({"full_name": names, "email": emails, "phone": phones, "ssn": ssns,
                             "notes": notes, "x1": features[:, 0], "x2": features[:, 1],
                             "y": target})
    personal.to_csv(root / "personal.csv", index=False)
    clean = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], ROWS),
                          "size": rng.choice(["small", "large"], ROWS),
                          "x1": features[:, 0], "x2": features[:, 1], "y": target})
    clean.to_csv(root / "clean.csv", index=False)
    frame = personal[["x1", "x2"]]
    joblib.dump(RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, target),
                root / "rf.joblib")
    joblib.dump(RandomForestClassifier(n_estimators=5, random_state=0).fit(
        frame, np.array(names)[target]), root / "named.joblib")
    texts = [f"please forward to {e} asap" if i % 2 else "nothing personal here"
             for i, e in enumerate(emails)]
    joblib.dump(make_pipeline(TfidfVectorizer(token_pattern=r"\S+"), LogisticRegression())
                .fit(texts, target), root / "tfidf.joblib")
    (root / "hostile.pkl").write_bytes(
        pickle.dumps(_HostileWithAddresses(root / "CANARY", emails[:5]), protocol=2)
    )
    return Files(root / "personal.csv", root / "clean.csv", root / "rf.joblib",
                 root / "tfidf.joblib", root / "named.joblib", root / "hostile.pkl",
                 (*names, *emails, *phones, *ssns))


def _audit(model: Path, data: Path, rules: Sequence[type[Rule]],
           options: dict[str, dict[str, Any]] | None = None,
           progress: list[str] | None = None) -> AuditRun:
    subject = build_subject(str(model), data=data, train=None, holdout=None, target="y",
                            source=None, requirements=[])
    settings = EngineSettings(rule_options=options or {})
    return run_audit(subject, rules, settings, (progress if progress is not None else []).append)


def _result(audit: AuditRun, rule_id: str) -> RuleResult:
    return next(r for r in audit.results if r.rule_id == rule_id)


def _entities(finding: Finding) -> set[str]:
    entities = finding.evidence["entities"]
    assert isinstance(entities, list)
    return {str(e["entity"]) for e in entities if isinstance(e, dict)}


# --------------------------------------------------------------------------- MLA401


def test_mla401_points_at_each_personal_column(files: Files) -> None:
    result = _result(_audit(files.rf, files.personal, [PersonalDataInData]), "MLA401")
    assert result.status is Status.FAILED
    by_column = {f.location.pointer: f for f in result.findings}
    assert set(by_column) == {"full_name", "email", "phone", "ssn", "notes"}
    assert _entities(by_column["email"]) == {"EMAIL_ADDRESS"}
    assert _entities(by_column["phone"]) == {"PHONE_NUMBER"}
    assert _entities(by_column["notes"]) == {"PERSON", "PHONE_NUMBER"}
    assert by_column["ssn"].severity is Severity.HIGH
    assert by_column["email"].location.artifact == str(files.personal)
    notes = by_column["notes"].evidence
    assert notes["column_kind"] == "text"
    metrics = result.metrics["datasets"]
    assert isinstance(metrics, dict)
    assert metrics["data"]["columns_skipped"] == {"x1": "numeric", "x2": "numeric", "y": "numeric"}
    assert "blank spaCy" in str(result.metrics["engine"])


def test_mla401_quiet_on_data_without_personal_columns(files: Files) -> None:
    result = _result(_audit(files.rf, files.clean, [PersonalDataInData]), "MLA401")
    assert result.status is Status.PASSED
    assert result.findings == ()


def test_mla401_runs_when_the_load_gate_blocks_the_model(files: Files) -> None:
    audit = _audit(files.hostile, files.personal,
                   [DangerousPickleImports, PersonalDataInData, PersonalDataInOutputs])
    assert _result(audit, "MLA401").status is Status.FAILED
    assert _result(audit, "MLA403").status is Status.SKIPPED
    assert not (files.hostile.parent / "CANARY").exists()


def test_ignore_values_drops_a_value_named_by_its_keyed_hash(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SALT_ENV, "test salt")
    frame = pd.read_csv(files.clean)
    frame["contact"] = "support@example.com"
    data = files.clean.parent / "support.csv"
    frame.to_csv(data, index=False)
    result = _result(_audit(files.rf, data, [PersonalDataInData]), "MLA401")
    (finding,) = result.findings
    (first_entity,) = json.loads(json.dumps(finding.evidence["entities"]))
    value_hash = first_entity["examples"][0]["hash"]
    assert value_hash == redactor_from().hash("EMAIL_ADDRESS", "support@example.com")
    options = {"MLA401": {"ignore_values": [value_hash]}}
    quiet = _result(_audit(files.rf, data, [PersonalDataInData], options), "MLA401")
    assert quiet.findings == ()


# --------------------------------------------------------------------------- MLA402


def test_mla402_finds_addresses_in_a_tfidf_vocabulary(files: Files) -> None:
    result = _result(_audit(files.tfidf, files.personal, [PersonalDataInArtifact]), "MLA402")
    (finding,) = result.findings
    assert finding.location.pointer == "steps[0][1].vocabulary_"
    assert finding.location.artifact == str(files.tfidf)
    assert _entities(finding) == {"EMAIL_ADDRESS"}
    assert finding.severity is Severity.HIGH
    assert result.metrics["paths_with_personal_data"] == 1


def test_mla402_quiet_on_a_numeric_model(files: Files) -> None:
    result = _result(_audit(files.rf, files.personal, [PersonalDataInArtifact]), "MLA402")
    assert result.status is Status.PASSED
    assert json.loads(json.dumps(result.metrics["strings"])) > 0


def test_mla402_reads_a_blocked_artifact_without_loading_it(
    files: Files
) -> None:
    audit = _audit(files.hostile, files.personal, [DangerousPickleImports, PersonalDataInArtifact])
    assert _result(audit, "MLA101").status is Status.FAILED
    (finding,) = _result(audit, "MLA402").findings
    assert finding.location.pointer == "addresses"
    assert not (files.hostile.parent / "CANARY").exists()


def test_mla402_reads_onnx_string_attributes(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.preprocessing import OneHotEncoder

    emails = np.array([["ann@example.com"], ["bob@example.org"]] * 5)
    pipeline = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(emails, [0, 1] * 5)
    model = to_onnx(pipeline, initial_types=[("email", StringTensorType([None, 1]))])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    subject = build_subject(str(path), data=None, train=None, holdout=None, target=None,
                            source=None, requirements=[])
    (result,) = run_audit(subject, [PersonalDataInArtifact], EngineSettings()).results
    (finding,) = result.findings
    assert finding.location.pointer == (
        "graph > node 'OneHotEncoder' (OneHotEncoder) attribute 'cats_strings'"
    )


def test_mla402_caps_the_strings_it_analyses_and_says_so(files: Files, tmp_path: Path) -> None:
    path = tmp_path / "many.pkl"
    strings = ["ann@example.com", *(f"token{index:05d}" for index in range(3_000))]
    path.write_bytes(pickle.dumps({"addresses": strings}, protocol=4))
    options = {"MLA402": {"max_strings": 1_000}}
    result = _result(_audit(path, files.personal, [PersonalDataInArtifact], options), "MLA402")
    assert result.metrics["strings"] == 1_000
    assert result.metrics["strings_unread"] == 2_002  # the key "addresses" is a string too
    unread = [f for f in result.findings if "not analysed" in f.title]
    assert [f.severity for f in unread] == [Severity.INFO]
    assert unread[0].evidence["strings_unread"] == 2_002
    assert any(f.location.pointer == "[#0]" for f in result.findings)  # the address was read


# --------------------------------------------------------------------------- MLA403


def test_mla403_finds_names_among_class_labels(files: Files) -> None:
    # MLA402 finds the same names in classes_; that must not stop the model from loading.
    audit = _audit(files.named_classes, files.personal,
                   [PersonalDataInArtifact, PersonalDataInOutputs])
    assert _result(audit, "MLA402").findings
    result = _result(audit, "MLA403")
    assert {f.location.pointer for f in result.findings} == {"classes", "predict() output"}
    assert all(_entities(f) == {"PERSON"} for f in result.findings)
    assert result.queries == ROWS


def test_mla403_quiet_on_numeric_outputs(files: Files) -> None:
    result = _result(_audit(files.rf, files.personal, [PersonalDataInOutputs]), "MLA403")
    assert result.status is Status.PASSED
    assert result.metrics["predictions_text_values"] == 0


# --------------------------------------------------------------------------- redaction


def _variants(value: str) -> set[str]:
    """The value, and its digits alone where it is a number (a reformatted leak is a leak)."""
    digits = "".join(c for c in value if c.isdigit())
    return {value, value.lower()} | ({digits} if len(digits) >= 7 else set())


def test_no_planted_value_reaches_any_output(
    files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SALT_ENV, "redaction test")
    config = tmp_path / "mlaudit.toml"  # defaults, whatever the working directory holds
    config.touch()
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = []
    # The whole pipeline, as a user runs it: the report, its library warnings and the gate's
    # reasons come from mlaudit.scan, every renderer and the console summary from that report.
    audits = [
        mlaudit.scan(model, data=files.personal, target="y", select=rules,
                     progress=outputs.append, config=config)
        for model, rules in (
            (files.named_classes, PII_RULE_IDS),
            (files.tfidf, ["MLA402"]),
            (files.hostile, PII_RULE_IDS),
        )
    ]
    for audit in audits:
        assert audit.findings
        outputs.append(json.dumps(audit.report, ensure_ascii=False))
        outputs.extend(audit.report["gate"]["reasons"])
        outputs.append(audit._repr_html_())
        Output(make_console(stderr=True), quiet=False, verbose=True).summary(audit.report, [])
        for output_format in FORMATS:  # every renderer, present and future
            outputs.append(renderer_for(output_format).render(audit.report).decode("utf-8"))
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err, *(r.getMessage() for r in caplog.records)]
    text = "\n".join(outputs)
    leaked = sorted(v for value in files.planted for v in _variants(value) if v in text)
    assert leaked == []
    assert "•••" in text  # the masked forms are there instead
