"""Well-built scikit-learn models pass the load gate: the allowlist knows what they import.

A gate that refuses a 3-class HistGradientBoosting model for importing scikit-learn's own
loss class gets switched off. Each model here is fitted, saved with joblib and scanned with
the artifact rules and the default gate, as a user's CI would.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    StackingRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import TargetEncoder

from mlaudit.loaders.load_gate import LoadStatus, decide
from mlaudit.scanners.pickle import scan_bytes
from mlaudit.scanners.pickle_policy import Verdict, classify
from mlaudit.subject.build import open_model
from tests.conftest import Runner


def _iris() -> tuple[pd.DataFrame, np.ndarray]:
    features, labels = load_iris(return_X_y=True, as_frame=True)
    return features, labels.to_numpy()


def _diabetes() -> tuple[pd.DataFrame, np.ndarray]:
    features, target = load_diabetes(return_X_y=True, as_frame=True)
    return features, target.to_numpy()


def _with_category() -> tuple[pd.DataFrame, np.ndarray]:
    features, labels = _iris()
    colours = np.random.default_rng(0).choice(["red", "green", "blue"], len(features))
    return features.assign(colour=colours), labels


def _logistic() -> LogisticRegression:
    return LogisticRegression(max_iter=500)


def _calibrated(method: str) -> CalibratedClassifierCV:
    return CalibratedClassifierCV(RandomForestClassifier(5, random_state=0), method=method)


MODELS: dict[str, tuple[Callable[[], Any], Callable[[], tuple[pd.DataFrame, np.ndarray]]]] = {
    "hgb-3-classes": (lambda: HistGradientBoostingClassifier(max_iter=5), _iris),
    "hgb-early-stopping": (
        lambda: HistGradientBoostingClassifier(max_iter=30, early_stopping=True), _iris
    ),
    **{
        f"hgb-regressor-{loss}": (partial(HistGradientBoostingRegressor, max_iter=5, loss=loss),
                                  _diabetes)
        for loss in ("squared_error", "absolute_error", "poisson", "gamma")
    },
    "hgb-regressor-quantile": (
        lambda: HistGradientBoostingRegressor(max_iter=5, loss="quantile", quantile=0.9),
        _diabetes,
    ),
    "stacking-classifier": (
        lambda: StackingClassifier(
            [("lr", _logistic()), ("hgb", HistGradientBoostingClassifier(max_iter=5))]
        ),
        _iris,
    ),
    "stacking-regressor": (
        lambda: StackingRegressor([("ridge", Ridge()), ("rf", RandomForestRegressor(5))]),
        _diabetes,
    ),
    **{
        f"calibrated-{method}": (partial(_calibrated, method), _iris)
        for method in ("sigmoid", "isotonic", "temperature")
    },
    "target-encoder": (
        lambda: make_pipeline(
            make_column_transformer((TargetEncoder(), ["colour"]), remainder="passthrough"),
            _logistic(),
        ),
        _with_category,
    ),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, (make, data) in MODELS.items():
        features, target = data()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter of the tiny fits
            model = make().fit(features, target)
        paths[name] = folder / f"{name}.joblib"
        joblib.dump(model, paths[name])
    return paths


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_global_the_model_imports_is_allowed(saved: dict[str, Path], name: str) -> None:
    imports = scan_bytes(saved[name].read_bytes()).imports
    verdicts = {i.qualified_name: classify(i.module, i.name).verdict for i in imports}
    assert {q for q, v in verdicts.items() if v is not Verdict.ALLOWED} == set()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_model_passes_the_default_gate_and_may_be_loaded(
    run_cli: Runner, saved: dict[str, Path], name: str
) -> None:
    result = run_cli("scan", saved[name], "--select", "MLA1")
    assert result.exit_code == 0, result.stderr
    decision = decide(open_model(str(saved[name])), (), trust_model=False)
    assert decision.status is LoadStatus.ALLOWED, decision.reasons
