"""The oracle batches, caches and counts, and refuses outputs it cannot read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlaudit.robustness.oracle import ModelOutputError, Oracle
from mlaudit.robustness.space import FeatureSpace
from mlaudit.subject.model_info import LoadedModel, Task


def _model(predictor, task: Task = Task.CLASSIFICATION) -> LoadedModel:  # type: ignore[no-untyped-def]
    return LoadedModel("test", task, None, predictor)


def _oracle(model: LoadedModel, reference: np.ndarray, tolerance: float | None = None) -> Oracle:
    base = pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})
    return Oracle(model, FeatureSpace.from_data([base]), base, reference, tolerance)


def test_batches_cache_and_counts_rows_sent() -> None:
    calls: list[int] = []

    def predict(frame: pd.DataFrame) -> np.ndarray:
        calls.append(len(frame))
        return (frame["x"] > 0.5).astype(int).to_numpy()

    oracle = _oracle(_model(predict), np.array([0, 1]))
    rows = np.array([0, 0, 1, 0])
    points = np.array([[0.9, 0.0], [0.9, 0.0], [0.1, 1.0], [0.2, 0.0]]) / oracle.space.scale
    assert oracle.adversarial(rows, points).tolist() == [True, True, True, False]
    assert calls == [3]  # one call; the repeated point was asked once
    assert oracle.adversarial(rows, points).tolist() == [True, True, True, False]
    assert calls == [3]  # answered from the cache
    assert oracle.queries.tolist() == [2, 1]
    oracle.adversarial(rows, points, cached=False)
    assert calls == [3, 4]
    assert oracle.queries.tolist() == [5, 2]


def test_regression_flips_beyond_tolerance() -> None:
    oracle = _oracle(
        _model(lambda frame: frame["x"].to_numpy() * 10.0, Task.REGRESSION),
        np.array([0.0, 10.0]),
        tolerance=1.0,
    )
    raw = np.array([[0.05, 0], [0.2, 0], [0.95, 0]])
    verdicts = oracle.adversarial(np.array([0, 0, 1]), raw / oracle.space.scale)
    assert verdicts.tolist() == [False, True, False]


@pytest.mark.parametrize("answer", [np.zeros((2, 2)), np.zeros(3), np.zeros(())])
def test_wrong_output_shape_is_a_clear_error(answer: np.ndarray) -> None:
    oracle = _oracle(_model(lambda frame: answer), np.array([0, 1]))
    with pytest.raises(ModelOutputError, match="expected \\(2,\\)"):
        oracle.adversarial(np.array([0, 1]), np.zeros((2, 2)))
