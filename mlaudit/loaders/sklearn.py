"""Wrap an in-memory estimator that follows the scikit-learn API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError
from mlaudit.subject.model_info import InputKind, LoadedModel, Predictor, Task

EstimatorInput = Callable[[pd.DataFrame], Any]
_BOOSTING_LIBRARIES = frozenset({"xgboost", "lightgbm", "catboost"})


def wrap_estimator(
    estimator: Any,
    framework: str,
    origin: str,
    *,
    frames: bool = False,
    text_column: str | None = None,
) -> LoadedModel:
    """Wrap ``estimator``, fed what it takes (see :func:`estimator_input`).

    A text model reads the data column ``text_column``; None leaves ``feature_names`` unset
    for the engine to name the column from the data (``compat.with_text_column``).
    """
    if not callable(getattr(estimator, "predict", None)):
        raise InputError(
            f"{origin} holds a {type(estimator).__name__}, not a model with a predict() method"
        )
    kind, to_input = estimator_input(estimator, origin, frames=frames)
    feature_names: tuple[str, ...] | None
    if kind is InputKind.TEXT:
        feature_names = (text_column,) if text_column is not None else None
        n_features = None
    else:
        names = getattr(estimator, "feature_names_in_", None)
        feature_names = tuple(str(n) for n in names) if names is not None else None
        n_features = getattr(estimator, "n_features_in_", None)
    classes = getattr(estimator, "classes_", None)
    proba = getattr(estimator, "predict_proba", None)
    return LoadedModel(
        framework=framework_of(estimator, framework),
        task=_task_of(estimator, classes),
        estimator=estimator,
        predictor=_adapter(estimator.predict, to_input),
        probability_predictor=_adapter(proba, to_input) if callable(proba) else None,
        classes=tuple(classes) if classes is not None else None,
        n_features=int(n_features) if n_features is not None else None,
        feature_names=feature_names,
        input_kind=kind,
        estimator_input=to_input,
    )


def estimator_input(
    estimator: Any, origin: str, *, frames: bool = False
) -> tuple[InputKind, EstimatorInput]:
    """What one row of ``estimator``'s input is, and how a frame of the data becomes it.

    Read from the model itself, first match wins: a text vectorizer (alone, first in a
    Pipeline, or a FeatureUnion of them) takes a 1-D array of texts; a model fitted on a
    DataFrame (``feature_names_in_``), one that starts with a ColumnTransformer (it selects
    columns by name) or ``frames`` (a Python model the user wrote for DataFrames) takes the
    DataFrame; anything else a plain array.
    """
    from sklearn.compose import ColumnTransformer

    vectorizers = _text_vectorizers(estimator)
    if vectorizers:
        for vectorizer in vectorizers:
            _refuse_file_input(vectorizer, origin)
        return InputKind.TEXT, _texts
    first = _first_step(estimator)
    if (
        frames
        or getattr(estimator, "feature_names_in_", None) is not None
        or isinstance(first, ColumnTransformer)
    ):
        return InputKind.TABULAR, _frame
    return InputKind.TABULAR, _array


def framework_of(estimator: Any, default: str) -> str:
    """The library behind ``estimator`` (a Pipeline's final step) when it is one of the
    boosting libraries with scikit-learn wrappers, which the report names; else ``default``."""
    steps = getattr(estimator, "steps", None)
    while isinstance(steps, list) and steps:
        estimator = steps[-1][1]
        steps = getattr(estimator, "steps", None)
    library = type(estimator).__module__.partition(".")[0]
    return library if library in _BOOSTING_LIBRARIES else default


def _first_step(estimator: Any) -> Any:
    """The step that first sees the input, through nested Pipelines."""
    steps = getattr(estimator, "steps", None)
    while isinstance(steps, list) and steps:
        estimator = steps[0][1]
        steps = getattr(estimator, "steps", None)
    return estimator


def _text_vectorizers(estimator: Any) -> list[Any]:
    """The text vectorizers that read the raw input, or [] when the model does not take text."""
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.pipeline import FeatureUnion

    first = _first_step(estimator)
    if isinstance(first, CountVectorizer | HashingVectorizer):  # TfidfVectorizer included
        return [first]
    if isinstance(first, FeatureUnion) and first.transformer_list:
        found = [_text_vectorizers(part) for _, part in first.transformer_list]
        if all(found):  # a union of word and character n-grams, say
            return [v for vectorizers in found for v in vectorizers]
    return []


def _refuse_file_input(vectorizer: Any, origin: str) -> None:
    """A vectorizer with ``input='filename'`` (or ``'file'``) opens whatever path a data row
    names: mlaudit queries models with text content only."""
    kind = getattr(vectorizer, "input", "content")
    if kind != "content":
        raise InputError(
            f"{origin}: its {type(vectorizer).__name__} reads input={kind!r}, so querying it "
            "would open the files the data names; mlaudit audits text models that take the "
            "text itself (input='content')"
        )


def _texts(frame: pd.DataFrame) -> np.ndarray:
    """The frame's one column as a 1-D array of texts. A missing value is the empty text: a
    CSV file cannot tell them apart, and a vectorizer refuses NaN."""
    column = frame.iloc[:, 0]
    return column.where(column.notna(), "").to_numpy(dtype=object)


def _frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


def _array(frame: pd.DataFrame) -> np.ndarray:
    return frame.to_numpy()


def _task_of(estimator: Any, classes: Any) -> Task:
    from sklearn.base import BaseEstimator, is_classifier, is_regressor

    if classes is not None or callable(getattr(estimator, "predict_proba", None)):
        return Task.CLASSIFICATION
    # scikit-learn's tag helpers only work on its own estimators, not on duck-typed models.
    if isinstance(estimator, BaseEstimator):
        if is_classifier(estimator):
            return Task.CLASSIFICATION
        if is_regressor(estimator):
            return Task.REGRESSION
    return Task.UNKNOWN


def _adapter(method: Any, to_input: EstimatorInput) -> Predictor:
    def call(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(method(to_input(frame)))

    return call
