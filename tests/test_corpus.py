"""The whole artifact corpus through the real pipeline: sniffing, every scanner, the gate.

Asserted for every hostile file (pickles, archives, PyTorch, NumPy, compressed joblib, Keras,
ONNX, safetensors): its format is sniffed from content, it gets a finding of high or critical
severity from the expected rule, the load gate blocks it, and no canary appears. For every
benign real file: no finding of high or worse, and the gate lets it through.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlaudit.core.findings import Severity
from mlaudit.loaders.load_gate import LoadStatus, decide
from mlaudit.scanners.pickle_policy import Verdict
from mlaudit.subject.build import ModelArtifact, open_model
from tests.conftest import TARGET, Runner, Workspace
from tests.fixtures.benign_archives import BENIGN_SAMPLE_NAMES, build_benign_archives
from tests.fixtures.benign_formats import BENIGN_FORMAT_NAMES, build_benign_formats
from tests.fixtures.hostile_archives import ARCHIVE_SAMPLE_NAMES, build_hostile_archives
from tests.fixtures.hostile_formats import HOSTILE_FORMAT_NAMES, build_hostile_formats
from tests.fixtures.hostile_pickles import HOSTILE_SAMPLE_NAMES

pytestmark = pytest.mark.slow


def _severe_rules(artifact: ModelArtifact) -> set[str]:
    """Rules with something of high or worse to say about the artifact, from its inventory."""
    inventory = artifact.inventory
    rules = {i.rule_id for i in inventory.issues if i.severity >= Severity.HIGH}
    if inventory.with_verdict(Verdict.DANGEROUS) or inventory.problems:
        rules.add("MLA101")
    return rules


def test_the_corpus_is_large_enough() -> None:
    hostile = len(HOSTILE_SAMPLE_NAMES) + len(ARCHIVE_SAMPLE_NAMES) + len(HOSTILE_FORMAT_NAMES)
    benign = len(BENIGN_SAMPLE_NAMES) + len(BENIGN_FORMAT_NAMES)
    assert hostile >= 40
    assert benign >= 25


@pytest.mark.parametrize("name", ARCHIVE_SAMPLE_NAMES)
def test_hostile_archive_is_blocked(name: str, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    [sample] = build_hostile_archives(tmp_path / "corpus", canary, [name])
    artifact = open_model(str(sample.path))
    expected = sample.expected_rule or "MLA101"
    assert expected in _severe_rules(artifact), artifact.inventory
    assert decide(artifact, [], trust_model=False).status is LoadStatus.BLOCKED
    assert not canary.exists()


@pytest.mark.parametrize("name", HOSTILE_FORMAT_NAMES)
def test_hostile_format_is_blocked(name: str, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    [sample] = build_hostile_formats(tmp_path / "corpus", canary, [name])
    artifact = open_model(str(sample.path))
    assert sample.rule_id in _severe_rules(artifact), artifact.inventory.issues
    assert decide(artifact, [], trust_model=False).status is LoadStatus.BLOCKED
    assert not canary.exists()


@pytest.mark.parametrize("name", BENIGN_SAMPLE_NAMES)
def test_benign_archive_has_nothing_severe(name: str, tmp_path: Path) -> None:
    [sample] = build_benign_archives(tmp_path / "benign", [name])
    artifact = open_model(str(sample.path))
    assert _severe_rules(artifact) == set(), artifact.inventory
    assert artifact.inventory.with_verdict(Verdict.UNLISTED) == ()


@pytest.mark.parametrize("name", BENIGN_FORMAT_NAMES)
def test_benign_format_has_nothing_severe(name: str, tmp_path: Path) -> None:
    [sample] = build_benign_formats(tmp_path / "benign", [name])
    artifact = open_model(str(sample.path))
    assert _severe_rules(artifact) == set(), artifact.inventory.issues
    assert decide(artifact, [], trust_model=False).may_load


def test_cli_reports_a_keras_lambda_with_rule_and_location(
    run_cli: Runner, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    [sample] = build_hostile_formats(tmp_path / "corpus", canary, ["keras_nested_lambda_zip"])
    result = run_cli("scan", sample.path, "--select", "MLA1")
    assert result.exit_code == 1
    [finding] = [f for f in result.result("MLA104")["findings"] if f["severity"] == "high"]
    assert "lambda" in finding["location"]["pointer"]
    assert result.report["subject"]["model"]["format"] == "keras"


def test_cli_state_dict_is_scanned_loaded_and_explained(run_cli: Runner, tmp_path: Path) -> None:
    [sample] = build_benign_archives(tmp_path / "benign", ["torch_state_dict"])
    result = run_cli("scan", sample.path)
    assert result.exit_code == 0, result.stderr
    assert result.report["subject"]["model"]["format"] == "pytorch"
    mla105 = result.result("MLA105")["findings"]
    assert [f["severity"] for f in mla105] == ["low"]


# Fitted and scanned in child processes: libgomp does not survive fork, and this test process
# has run OpenMP code (other tests train XGBoost and LightGBM), so it could not fork the
# isolated worker that loads these models (see the README's isolation section).
_FIT_BOOSTING = """
import sys
import joblib
import pandas as pd
library, train_csv, target, out = sys.argv[1:]
train = pd.read_csv(train_csv)
features, labels = train.drop(columns=[target]), train[target]
if library == "xgboost":
    from xgboost import XGBClassifier
    model = XGBClassifier(n_estimators=10, max_depth=3).fit(features, labels)
else:
    from lightgbm import LGBMClassifier
    model = LGBMClassifier(n_estimators=10, verbose=-1).fit(features, labels)
joblib.dump(model, out)
"""


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosting_models_pass_the_gate_and_are_audited(
    workspace: Workspace, tmp_path: Path, library: str
) -> None:
    path = tmp_path / f"{library}.joblib"
    subprocess.run(
        [sys.executable, "-c", _FIT_BOOSTING, library, str(workspace.train), TARGET, str(path)],
        check=True, capture_output=True, timeout=300,
    )
    assert _severe_rules(open_model(str(path))) == set()
    out = tmp_path / "out"
    scan = subprocess.run(
        [sys.executable, "-m", "mlaudit", "scan", str(path), "--data", str(workspace.holdout),
         "--target", TARGET, "--profile", "quick", "-o", str(out)],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )
    assert scan.returncode == 0, scan.stderr
    report = json.loads((out / "report.json").read_text())
    results = {r["rule_id"]: r for r in report["results"]}
    assert report["subject"]["model"]["load"]["status"] == "allowed"
    assert results["MLA102"]["findings"] == []
    assert results["MLA702"]["status"] == "passed"


def _keras_with_numpy_weights(path: Path, weights: dict[str, object]) -> None:
    import io
    import json
    import zipfile

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **weights)  # type: ignore[arg-type]
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": []}}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        archive.writestr("model.weights.npz", buffer.getvalue())


def test_keras_numpy_weights_with_a_pickled_payload_are_blocked(tmp_path: Path) -> None:
    """Keras loads model.weights.npz with allow_pickle=True, so an object array runs code."""
    import numpy as np

    from tests.fixtures.hostile_pickles import _system

    canary = tmp_path / "canary"
    payload = np.empty(1, dtype=object)
    payload[0] = _system(canary)
    path = tmp_path / "model.keras"
    _keras_with_numpy_weights(path, {"dense": np.zeros(3), "hook": payload})
    artifact = open_model(str(path))
    [dangerous] = artifact.inventory.with_verdict(Verdict.DANGEROUS)
    assert dangerous.member is not None
    assert dangerous.member.startswith("model.weights.npz/")
    assert decide(artifact, [], trust_model=False).status is LoadStatus.BLOCKED
    assert not canary.exists()


def test_keras_numeric_numpy_weights_are_clean(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "model.keras"
    _keras_with_numpy_weights(path, {"dense": np.zeros((4, 3)), "bias": np.ones(3)})
    assert _severe_rules(open_model(str(path))) == set()
