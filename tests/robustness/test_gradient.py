"""ART's gradient attacks see exactly the function the model computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, PolynomialFeatures, StandardScaler
from sklearn.svm import SVC

from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.robustness.gradient import NoGradients, evade, gradient_model
from mlaudit.robustness.space import FeatureSpace, distance
from mlaudit.subject.model_info import LoadedModel, Task
from tests.robustness.models import separated


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(),
        make_pipeline(StandardScaler(), LogisticRegression()),
        make_pipeline(MinMaxScaler(), StandardScaler(), SVC(kernel="linear")),
    ],
    ids=["logistic", "scaled logistic", "two scalers + linear svc"],
)
def test_the_wrapped_model_predicts_like_the_model(estimator: object) -> None:
    frame, labels = separated(rows=120, gap=0.0)
    estimator.fit(frame, labels)  # type: ignore[attr-defined]
    space = FeatureSpace.from_data([frame], immutable=["noise"])
    wrapped = gradient_model(wrap_estimator(estimator, "sklearn", "test"), space)
    vectors = wrapped.to_input(frame.to_numpy(dtype=np.float64))
    through_art = wrapped.classifier.predict(vectors.astype(np.float32)).argmax(axis=1)
    assert (through_art == estimator.predict(frame)).mean() > 0.99  # type: ignore[attr-defined]
    np.testing.assert_allclose(wrapped.to_raw(vectors), frame.to_numpy(dtype=np.float64))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_flips_within_epsilon_and_never_moves_frozen_features(norm: str) -> None:
    frame, labels = separated(rows=120, gap=0.0)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=100)).fit(frame, labels)
    space = FeatureSpace.from_data([frame], immutable=["noise"])
    wrapped = gradient_model(wrap_estimator(estimator, "sklearn", "test"), space)
    vectors = wrapped.to_input(frame.to_numpy(dtype=np.float64))
    adversarial = evade(
        wrapped, vectors, labels, method="pgd", norm=norm, epsilon=0.2, iterations=20
    )
    noise = list(space.columns).index("noise")
    np.testing.assert_allclose(adversarial[:, noise], vectors[:, noise], rtol=1e-6)
    mutable = list(space.mutable)
    assert np.all(distance(adversarial[:, mutable] - vectors[:, mutable], norm) <= 0.2 + 1e-5)
    flipped = (
        estimator.predict(
            frame.assign(**dict(zip(space.columns, wrapped.to_raw(adversarial).T, strict=True)))
        )
        != labels
    )
    # Rows within half of ε (in lead's unit, its robust spread) of the boundary must flip.
    near = np.abs(frame["lead"] - 0.5) < 0.1 * space.scale[0]
    assert flipped[near.to_numpy()].mean() > 0.9


def test_a_torch_module_gets_gradients() -> None:
    frame, labels = separated(rows=60, gap=0.0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 2))
    model = LoadedModel(
        "pytorch", Task.CLASSIFICATION, module, lambda f: np.zeros(len(f)), classes=(0, 1)
    )
    wrapped = gradient_model(model, FeatureSpace.from_data([frame]))
    gradients = wrapped.classifier.loss_gradient(
        wrapped.to_input(frame.to_numpy(dtype=np.float64)).astype(np.float32), np.eye(2)[labels]
    )
    assert gradients.shape == (60, 3)
    assert np.abs(gradients).sum() > 0


@pytest.mark.parametrize(
    ("estimator", "reason"),
    [
        (RandomForestClassifier(n_estimators=3), "RandomForestClassifier exposes no gradients"),
        (make_pipeline(PolynomialFeatures(), LogisticRegression()), "not a per-feature scaling"),
        (SVC(kernel="poly"), "not kernel='poly'"),
    ],
)
def test_models_without_usable_gradients_say_why(estimator: object, reason: str) -> None:
    frame, labels = separated(rows=60, gap=0.0)
    estimator.fit(frame, labels)  # type: ignore[attr-defined]
    with pytest.raises(NoGradients, match=reason):
        gradient_model(
            wrap_estimator(estimator, "sklearn", "test"), FeatureSpace.from_data([frame])
        )
