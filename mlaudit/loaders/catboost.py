"""CatBoost models saved as ``.cbm`` (``save_model``): numbers only, no code.

The model is CatBoost's own classifier or regressor. Its classes do not derive from
scikit-learn's, so MLA302 fits no reference models of it: CatBoost's training reads
``/proc/self/statm``, which the model worker's sandbox does not let it open, so a refittable
wrapper would turn that rule's skip into an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError, first_line
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.loaders.native_trees import given_names, import_library
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import LoadedModel, Predictor, Task

FRAMEWORK = "catboost"
# CatBoost's classification losses (its documentation's "Classification" and "Multiclass").
_CLASSIFYING = frozenset({"Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll"})


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    """The model in CatBoost's own classifier or regressor for its loss function."""
    catboost = import_library("catboost", "CatBoost", "catboost", artifact)
    assert artifact.path is not None
    try:
        probe = catboost.CatBoost().load_model(str(artifact.path), format="cbm")
        loss = str(probe.get_all_params().get("loss_function", "RMSE")).split(":")[0]
        classifier = loss in _CLASSIFYING
        kind = catboost.CatBoostClassifier if classifier else catboost.CatBoostRegressor
        estimator = kind().load_model(str(artifact.path), format="cbm")
    except catboost.CatBoostError as error:
        raise InputError(
            f"{artifact.reference} could not be loaded by CatBoost: {first_line(error)}"
        ) from None
    return LoadedModel(
        framework=FRAMEWORK,
        task=Task.CLASSIFICATION if classifier else Task.REGRESSION,
        estimator=estimator,
        predictor=_labels(estimator),
        probability_predictor=_probabilities(estimator) if classifier else None,
        classes=tuple(estimator.classes_) if classifier else None,
        n_features=len(estimator.feature_names_),
        feature_names=given_names(estimator.feature_names_),
    )


def _labels(estimator: Any) -> Predictor:
    def predict(frame: pd.DataFrame) -> np.ndarray:
        # A classifier answers with a column of labels: one label per row here.
        answers = np.asarray(estimator.predict(frame))
        return answers.reshape(len(frame), -1)[:, 0] if answers.ndim > 1 else answers

    return predict


def _probabilities(estimator: Any) -> Predictor:
    def predict_proba(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(estimator.predict_proba(frame))

    return predict_proba
