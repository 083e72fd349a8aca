"""A loaded model behind one small interface, whatever format it came from.

Rules query models only through :class:`LoadedModel`, which aligns data to the model's
features and counts every row queried (the ``queries`` of a rule result).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

Predictor = Callable[[pd.DataFrame], np.ndarray]


class Task(enum.Enum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    UNKNOWN = "unknown"


class InputKind(enum.Enum):
    """What one row of the model's input is: feature columns, or one text (``feature_names``
    then names the single data column that holds it, and the predictors receive a frame of
    that column alone)."""

    TABULAR = "tabular"
    TEXT = "text"


@dataclass
class _QueryCounter:
    rows: int = 0


@dataclass(frozen=True)
class LoadedModel:
    """A model that can be queried.

    ``feature_names`` is set when the model knows its input columns by name (scikit-learn's
    ``feature_names_in_``, one ONNX input per column); ``n_features`` when it knows only how
    many it takes.
    """

    framework: str
    task: Task
    estimator: object
    predictor: Predictor
    probability_predictor: Predictor | None = None
    classes: tuple[object, ...] | None = None
    n_features: int | None = None
    feature_names: tuple[str, ...] | None = None
    input_kind: InputKind = InputKind.TABULAR
    counter: _QueryCounter = field(default_factory=_QueryCounter, compare=False)

    @property
    def queries(self) -> int:
        return self.counter.rows

    def counting(self) -> LoadedModel:
        """A view with its own query counter, handed to one rule."""
        return replace(self, counter=_QueryCounter())

    def select_features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The columns the model takes, in its order (extra columns are dropped)."""
        if self.feature_names is not None:
            return frame.loc[:, list(self.feature_names)]
        return frame

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.counter.rows += len(frame)
        return np.asarray(self.predictor(self.select_features(frame)))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray | None:
        if self.probability_predictor is None:
            return None
        self.counter.rows += len(frame)
        return np.asarray(self.probability_predictor(self.select_features(frame)))


def json_safe_classes(classes: Sequence[object] | None) -> list[object] | None:
    """Class labels as plain JSON values (numpy scalars become Python scalars)."""
    if classes is None:
        return None
    return [c.item() if isinstance(c, np.generic) else c for c in classes]
