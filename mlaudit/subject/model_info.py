"""A loaded model behind one small interface, whatever format it came from.

Rules query models only through :class:`LoadedModel`, which aligns data to the model's
features and counts every row queried (the ``queries`` of a rule result).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError

Predictor = Callable[[pd.DataFrame], np.ndarray]
# LightGBM writes a space in a feature name as "_" (some versions JSON's special characters
# too), so a model fitted on the column "mean radius" names it "mean_radius".
_LIGHTGBM_SPELLING = str.maketrans(dict.fromkeys(' ",:[]{}', "_"))


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
class LoadCost:
    """What loading the model cost, taken around the loader in the process that loaded it.

    Raw readings, interpreted by :mod:`mlaudit.serving.resources`: the resident set (None
    where it cannot be read, as inside the confined worker) and the peak resident set (the
    kernel's high-water mark, None where the platform has none), in bytes, before and after.
    """

    seconds: float
    rss_before: int | None
    rss_after: int | None
    peak_before: int | None
    peak_after: int | None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Each row of ``logits`` as probabilities over its columns."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True, initial=-np.inf))
    probabilities: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities


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
    # What the estimator's own fit/predict take for a frame of the model's features (a
    # DataFrame, an array, a 1-D array of texts): reference models are refitted on exactly it.
    estimator_input: Callable[[pd.DataFrame], object] | None = None
    # Set by the engine around the loader (MLA801's load time and memory); None for a model
    # given in memory, which nothing loaded.
    load_cost: LoadCost | None = None
    # A torch module from the model's inputs to its class logits, whatever its head returns
    # (probabilities, one logit): what gradient attacks differentiate. None for other models.
    class_logits: object | None = None
    counter: _QueryCounter = field(default_factory=_QueryCounter, compare=False)

    @property
    def queries(self) -> int:
        return self.counter.rows

    def counting(self) -> LoadedModel:
        """A view with its own query counter, handed to one rule."""
        return replace(self, counter=_QueryCounter())

    def select_features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The columns the model takes, in its order (extra columns are dropped), under the
        data's own names (see :meth:`data_columns`)."""
        if self.feature_names is not None:
            found = self.data_columns(frame.columns)
            return frame.loc[:, [found.get(n, n) for n in self.feature_names]]
        return frame

    def data_columns(self, columns: Iterable[object]) -> dict[str, object]:
        """The data column behind each feature name found: the name itself, else the one
        column LightGBM's spelling of it gives (``mean radius`` for ``mean_radius``). Raises
        :class:`InputError` when several columns give the same spelling."""
        if self.feature_names is None:
            return {}
        columns = list(columns)
        present = set(columns)
        if all(name in present for name in self.feature_names):
            return {name: name for name in self.feature_names}
        spelled: dict[str, list[object]] = {}
        for column in columns:
            spelled.setdefault(str(column).translate(_LIGHTGBM_SPELLING), []).append(column)
        found: dict[str, object] = {}
        for name in self.feature_names:
            candidates = [name] if name in present else spelled.get(name, [])
            if len(candidates) > 1:
                raise InputError(
                    f"the model's feature {name!r} matches several data columns once spaces "
                    "and JSON's special characters are written as '_', as LightGBM writes "
                    f"feature names: {', '.join(repr(str(c)) for c in candidates)}; rename "
                    "or drop all but one"
                )
            if candidates:
                found[name] = candidates[0]
        return found

    def _model_input(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's columns under the names the model knows them by."""
        selected = self.select_features(frame)
        if self.feature_names is not None and list(selected.columns) != list(
            self.feature_names
        ):
            return selected.set_axis(list(self.feature_names), axis=1)
        return selected

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.counter.rows += len(frame)
        return np.asarray(self.predictor(self._model_input(frame)))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray | None:
        if self.probability_predictor is None:
            return None
        self.counter.rows += len(frame)
        return np.asarray(self.probability_predictor(self._model_input(frame)))

    def class_scores(self, frame: pd.DataFrame) -> np.ndarray | None:
        """How strongly the model holds each class (columns in ``classes`` order), to rank
        inputs by, not calibrated: probabilities, else the estimator's ``decision_function``
        where it takes ``estimator_input``; None for a model with labels alone."""
        probabilities = self.predict_proba(frame)
        if probabilities is not None:
            return probabilities
        decide = getattr(self.estimator, "decision_function", None)
        if not callable(decide) or self.estimator_input is None:
            return None
        self.counter.rows += len(frame)
        margins = np.asarray(decide(self.estimator_input(self._model_input(frame))), float)
        # A binary model's one margin is for classes[1]: as two columns, -m and m.
        return np.column_stack([-margins, margins]) if margins.ndim == 1 else margins


def json_safe_classes(classes: Sequence[object] | None) -> list[object] | None:
    """Class labels as plain JSON values (numpy scalars become Python scalars)."""
    if classes is None:
        return None
    return [c.item() if isinstance(c, np.generic) else c for c in classes]
