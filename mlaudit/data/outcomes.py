"""What drift does to the model: its predictions' drift, and its score on labelled current data.

Both query the model, on samples of at most a few thousand rows: a prediction costs what the
model's batch throughput allows, and the intervals say what the sample size buys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlaudit.core.findings import JsonValue
from mlaudit.core.stats import Interval, bootstrap_interval, clopper_pearson
from mlaudit.data.drift import ColumnDrift, column_drift
from mlaudit.data.profile import Kind
from mlaudit.subject.model_info import LoadedModel, Task

_BOOTSTRAP_RESAMPLES = 500


def predictions(model: LoadedModel, features: pd.DataFrame) -> pd.Series:
    return pd.Series(np.asarray(model.predict(features)).ravel(), name="prediction")


def prediction_kind(model: LoadedModel, predicted: pd.Series) -> Kind:
    """Classes compare as categories, regression outputs as numbers."""
    if model.task is Task.CLASSIFICATION:
        return Kind.CATEGORICAL
    if model.task is Task.REGRESSION:
        return Kind.NUMERIC
    numeric = pd.api.types.is_numeric_dtype(predicted.dtype)
    return Kind.NUMERIC if numeric and predicted.nunique() > 20 else Kind.CATEGORICAL


def prediction_drift(
    reference: pd.Series, current: pd.Series, kind: Kind, *, bins: int, rng: np.random.Generator
) -> ColumnDrift | None:
    if kind is Kind.CATEGORICAL:
        reference, current = reference.map(str), current.map(str)
    return column_drift(reference, current, bins=bins, rng=rng, kind=kind)


@dataclass(frozen=True)
class Performance:
    metric: str  # "accuracy" or "r2"
    score: Interval
    rows: int

    def as_metric(self) -> dict[str, JsonValue]:
        return {"metric": self.metric, "rows": self.rows, **self.score.as_metric()}


def performance(
    model: LoadedModel, features: pd.DataFrame, labels: pd.Series, rng: np.random.Generator
) -> Performance | None:
    """Accuracy (exact Clopper-Pearson interval) or R-squared (bootstrap interval) on the
    labelled rows; None when no row has a label."""
    labelled = labels.notna().to_numpy()
    if not labelled.any():
        return None
    features, truth = features.loc[labelled], labels.loc[labelled]
    predicted = np.asarray(model.predict(features)).ravel()
    if model.task is Task.REGRESSION:
        actual = truth.to_numpy(dtype=float)

        def r2(rows: np.ndarray) -> float:
            residual = np.sum((actual[rows] - predicted[rows]) ** 2)
            spread = np.sum((actual[rows] - actual[rows].mean()) ** 2)
            return float(1.0 - residual / spread) if spread > 0 else 0.0

        interval = bootstrap_interval(r2, len(actual), rng, resamples=_BOOTSTRAP_RESAMPLES)
        return Performance("r2", interval, len(actual))
    hits = int(np.sum(np.asarray([str(p) for p in predicted]) == truth.map(str).to_numpy()))
    return Performance("accuracy", clopper_pearson(hits, len(truth)), len(truth))
