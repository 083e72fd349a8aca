"""Wrap an in-memory estimator that follows the scikit-learn API."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError
from mlaudit.subject.model_info import LoadedModel, Predictor, Task


def wrap_estimator(
    estimator: Any, framework: str, origin: str, *, frames: bool = False
) -> LoadedModel:
    """Wrap ``estimator``; it gets DataFrames if fitted on them or if ``frames``, else arrays."""
    if not callable(getattr(estimator, "predict", None)):
        raise InputError(
            f"{origin} holds a {type(estimator).__name__}, not a model with a predict() method"
        )
    names = getattr(estimator, "feature_names_in_", None)
    feature_names = tuple(str(n) for n in names) if names is not None else None
    n_features = getattr(estimator, "n_features_in_", None)
    classes = getattr(estimator, "classes_", None)
    proba = getattr(estimator, "predict_proba", None)
    return LoadedModel(
        framework=framework,
        task=_task_of(estimator, classes),
        estimator=estimator,
        predictor=_frame_adapter(estimator.predict, frames or feature_names is not None),
        probability_predictor=(
            _frame_adapter(proba, frames or feature_names is not None) if callable(proba) else None
        ),
        classes=tuple(classes) if classes is not None else None,
        n_features=int(n_features) if n_features is not None else None,
        feature_names=feature_names,
    )


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


def _frame_adapter(method: Any, frames: bool) -> Predictor:
    def call(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(method(frame if frames else frame.to_numpy()))

    return call
