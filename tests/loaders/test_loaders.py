"""Loaders: each format loads into the same interface; the pickle loader defends itself."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from mlaudit.errors import InputError
from mlaudit.loaders import loader_for
from mlaudit.model import Task
from mlaudit.subject import open_model
from tests.conftest import TARGET, Runner, Workspace


def load(path: Path | str, *, trusted: bool = False, allowed: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    artifact = open_model(str(path), allowed)
    return loader_for(artifact.format)(artifact, trusted=trusted, extra_allowed=allowed)


def holdout_features(workspace: Workspace) -> pd.DataFrame:
    return pd.read_csv(workspace.holdout).drop(columns=[TARGET])


def test_pickle_loader_refuses_hostile_imports_even_without_the_gate(
    workspace: Workspace,
) -> None:
    """Defence in depth: a scanner bug alone must not be enough to run a payload."""
    with pytest.raises(InputError, match=r"refused to import posix\.system"):
        load(workspace.hostile)
    assert not workspace.canary.exists()


def test_joblib_model_loads_with_names_and_classes(workspace: Workspace) -> None:
    model = load(workspace.rf_joblib)
    assert model.framework == "scikit-learn"
    assert model.task is Task.CLASSIFICATION
    assert model.feature_names == workspace.feature_names
    assert model.classes == (0, 1)
    expected = joblib.load(workspace.rf_joblib).predict(holdout_features(workspace))
    np.testing.assert_array_equal(model.predict(holdout_features(workspace)), expected)


def test_onnx_model_matches_the_skops_original(workspace: Workspace) -> None:
    onnx_model = load(workspace.pipeline_onnx)
    skops_model = load(workspace.pipeline_skops)
    frame = holdout_features(workspace)
    assert onnx_model.framework == "onnxruntime"
    assert onnx_model.n_features == 8
    assert onnx_model.classes == (0, 1)
    np.testing.assert_array_equal(onnx_model.predict(frame), skops_model.predict(frame))
    onnx_proba = onnx_model.predict_proba(frame)
    skops_proba = skops_model.predict_proba(frame)
    assert onnx_proba is not None
    assert skops_proba is not None
    np.testing.assert_allclose(onnx_proba, skops_proba, atol=1e-4)


def test_loaded_model_counts_queried_rows(workspace: Workspace) -> None:
    model = load(workspace.rf_joblib).counting()
    frame = holdout_features(workspace)
    model.predict(frame.head(10))
    model.predict_proba(frame.head(5))
    assert model.queries == 15


def test_extra_columns_are_dropped_and_order_restored(workspace: Workspace) -> None:
    model = load(workspace.rf_joblib)
    frame = holdout_features(workspace)
    shuffled = frame[list(reversed(frame.columns))].assign(extra=1)
    np.testing.assert_array_equal(model.predict(shuffled), model.predict(frame))


ENTRY_MODULE = '''
import numpy as np

class Threshold:
    classes_ = np.array([0, 1])
    def predict(self, frame):
        return (frame.iloc[:, 0].to_numpy() > 14).astype(int)

model = Threshold()

def score(frame):
    return frame.iloc[:, 0].to_numpy() * 2.0
'''


def test_entry_point_model_object_and_function(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "served_model.py").write_text(ENTRY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli("scan", "served_model:model", "--data", workspace.holdout, "--target", TARGET)
    assert result.exit_code == 0, result.stderr
    model = result.report["subject"]["model"]
    assert model["format"] == "entry-point"
    assert model["sha256"] is None
    assert model["load"]["reasons"] == ["entry point named by the user, who vouches for its code"]
    assert result.result("MLA101")["status"] == "skipped"
    function = load("served_model:score")
    assert function.task is Task.UNKNOWN
    np.testing.assert_allclose(function.predict(pd.DataFrame({"a": [1.0]})), [2.0])


def test_entry_point_errors_are_input_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_model.py").write_text("raise RuntimeError('nope')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InputError, match="cannot import broken_model"):
        load("broken_model:model")
    with pytest.raises(InputError, match="has no missing"):
        load("json:missing")
