"""LightGBM models saved as text (``booster_.save_model``): numbers only, no code.

LightGBM has no public way to put a loaded booster into its own scikit-learn classes, so the
booster gets a small scikit-learn estimator of mlaudit's (:class:`LightGBMClassifierModel`,
:class:`LightGBMRegressorModel`). It carries the training parameters the file records, so a
clone refits as the audited model was fitted (MLA302's reference models).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from mlaudit.core.errors import InputError, first_line
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.loaders.native_trees import given_names, import_library
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import LoadedModel

FRAMEWORK = "lightgbm"
_CLASSIFYING = ("binary", "multiclass", "multiclassova", "cross_entropy", "xentropy")
# Parameters that describe the file or the machine it was trained on, not the training.
_NOT_TRAINING = ("num_iterations", "num_threads", "metric", "seed")


class _LightGBMModel(BaseEstimator):  # type: ignore[misc]
    """A LightGBM booster with the scikit-learn interface; ``params`` are LightGBM's own."""

    booster_: Any
    n_features_in_: int

    def __init__(
        self, params: dict[str, Any] | None = None, random_state: int | None = None
    ) -> None:
        self.params = params
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # LightGBM sends missing values down a branch
        return tags

    def _adopt(self, booster: Any) -> _LightGBMModel:
        self.booster_ = booster
        self.n_features_in_ = int(booster.num_feature())
        names = given_names(booster.feature_name())
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        return self

    def _train(self, features: Any, labels: np.ndarray, extra: dict[str, Any]) -> None:
        import lightgbm

        params = {k: v for k, v in (self.params or {}).items() if k not in _NOT_TRAINING}
        params.update(extra, verbosity=-1)
        if self.random_state is not None:
            params["seed"] = self.random_state
        rounds = int((self.params or {}).get("num_iterations", 100))
        booster = lightgbm.train(params, lightgbm.Dataset(features, label=labels), rounds)
        self._adopt(booster)

    def _inputs(self, features: Any) -> Any:
        # Columns arrive in the model's order (LoadedModel.select_features); LightGBM matches
        # them by position, and a frame's names may be the data's own spelling.
        return features.to_numpy() if isinstance(features, pd.DataFrame) else features

    def predict_raw(self, features: Any) -> np.ndarray:
        return np.asarray(self.booster_.predict(self._inputs(features), raw_score=True))


class LightGBMClassifierModel(ClassifierMixin, _LightGBMModel):  # type: ignore[misc]
    classes_: np.ndarray

    def fit(self, features: Any, labels: Any) -> LightGBMClassifierModel:
        classes, codes = np.unique(np.asarray(labels), return_inverse=True)
        extra: dict[str, Any] = (
            {"objective": "multiclass", "num_class": len(classes)} if len(classes) > 2
            else {"objective": "binary", "num_class": 1}
        )
        self._train(features, codes, extra)
        self.classes_ = classes
        return self

    def predict_proba(self, features: Any) -> np.ndarray:
        scores = np.asarray(self.booster_.predict(self._inputs(features)))
        return np.column_stack([1.0 - scores, scores]) if scores.ndim == 1 else scores

    def predict(self, features: Any, raw_score: bool = False) -> np.ndarray:
        if raw_score:
            return self.predict_raw(features)
        return np.asarray(self.classes_[np.argmax(self.predict_proba(features), axis=1)])


class LightGBMRegressorModel(RegressorMixin, _LightGBMModel):  # type: ignore[misc]
    def fit(self, features: Any, labels: Any) -> LightGBMRegressorModel:
        self._train(features, np.asarray(labels, dtype=np.float64), {})
        return self

    def predict(self, features: Any, raw_score: bool = False) -> np.ndarray:
        if raw_score:
            return self.predict_raw(features)
        return np.asarray(self.booster_.predict(self._inputs(features)))


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    lightgbm = import_library("lightgbm", "LightGBM", "lightgbm", artifact)
    assert artifact.path is not None
    try:
        booster = lightgbm.Booster(model_file=str(artifact.path))
    except lightgbm.basic.LightGBMError as error:
        raise InputError(
            f"{artifact.reference} could not be loaded by LightGBM: {first_line(error)}"
        ) from None
    params = dict(booster.params)
    objective = str(params.get("objective", "regression"))
    estimator: _LightGBMModel
    if objective in _CLASSIFYING:
        classifier = LightGBMClassifierModel(params)._adopt(booster)
        # The file keeps no labels: LightGBM trains on 0..k-1, so those are the classes.
        classifier.classes_ = np.arange(max(int(params.get("num_class", 1)), 2))
        estimator = classifier
    else:
        estimator = LightGBMRegressorModel(params)._adopt(booster)
    return wrap_estimator(estimator, FRAMEWORK, artifact.reference)
