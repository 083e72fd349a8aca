"""Exact radii of linear classifiers: the closed form, checked against independent solvers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog, minimize
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mlaudit.robustness.linear import NotLinear, hyperplane, linear_radii
from mlaudit.robustness.space import FeatureSpace


def _gaussian(rows: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.normal(0.0, [1.0, 3.0, 0.5, 2.0], size=(rows, 4)), columns=["a", "b", "c", "d"]
    )
    score = frame["a"] - 0.3 * frame["b"] + 2.0 * frame["c"] + rng.normal(0, 0.5, rows)
    return frame, (score > 0).astype(int).to_numpy()


def test_hyperplane_folds_the_scaler_in() -> None:
    frame, labels = _gaussian()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, labels)
    weights, bias = hyperplane(model, 4)
    np.testing.assert_allclose(
        frame.to_numpy() @ weights + bias, model.decision_function(frame), atol=1e-9
    )


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_far_from_the_edges_the_radius_is_the_distance_to_the_plane(norm: str) -> None:
    frame, labels = _gaussian()
    weights, bias = hyperplane(LogisticRegression().fit(frame, labels), 4)
    space = FeatureSpace.from_data([frame])
    central = frame[(frame.abs() < 0.3 * frame.abs().max()).all(axis=1)].to_numpy()
    radii = linear_radii(weights, bias, space, central, norm)
    pull = weights * space.scale
    margin = np.abs(central @ weights + bias)
    # Dual norms: L∞ balls reach |margin| / ||w||_1; RMS-L2 ones |margin| / ||w||_2 / sqrt(d).
    dual = np.abs(pull).sum() if norm == "linf" else np.sqrt((pull**2).sum() * 4)
    reachable = margin / dual < 0.5  # the plane is inside the range on every side
    np.testing.assert_allclose(radii[reachable], (margin / dual)[reachable], rtol=1e-9)
    assert reachable.sum() > 20


def test_linf_with_the_range_binding_matches_a_linear_program() -> None:
    frame, labels = _gaussian(rows=80, seed=1)
    weights, bias = hyperplane(LogisticRegression().fit(frame, labels), 4)
    space = FeatureSpace.from_data([frame])
    raw = frame.to_numpy()
    radii = linear_radii(weights, bias, space, raw, "linf")
    pull, extent = weights * space.scale, space.extent
    for row in range(len(raw)):
        unit = (raw[row] - space.lower) / space.scale
        margin = float(raw[row] @ weights + bias)
        side = np.sign(margin)
        # Variables (δ, t): minimise t with |δ| <= t, 0 <= unit + δ <= extent, side·w·δ <= -|m|.
        cost = np.r_[np.zeros(4), 1.0]
        upper = np.vstack([np.c_[np.eye(4), -np.ones(4)], np.c_[-np.eye(4), -np.ones(4)]])
        cross = np.r_[side * pull, 0.0][None, :]
        solved = linprog(
            cost,
            A_ub=np.vstack([upper, cross]),
            b_ub=np.r_[np.zeros(8), -abs(margin)],
            bounds=[*zip(-unit, extent - unit, strict=True), (0, None)],
        )
        if solved.status == 2:  # infeasible: the range does not reach the plane
            assert np.isinf(radii[row])
        else:
            assert radii[row] == pytest.approx(solved.fun, rel=1e-6, abs=1e-9)


def test_l2_with_the_range_binding_matches_a_numerical_minimum() -> None:
    frame, labels = _gaussian(rows=40, seed=2)
    weights, bias = hyperplane(LogisticRegression().fit(frame, labels), 4)
    space = FeatureSpace.from_data([frame])
    raw = frame.to_numpy()
    radii = linear_radii(weights, bias, space, raw, "l2")
    pull, extent = weights * space.scale, space.extent
    checked = 0
    for row in np.flatnonzero(np.isfinite(radii)):
        unit = (raw[row] - space.lower) / space.scale
        margin = float(raw[row] @ weights + bias)
        solved = minimize(
            lambda d: float(np.mean(d * d)),
            np.zeros(4),
            jac=lambda d: 2.0 * d / 4.0,
            bounds=list(zip(-unit, extent - unit, strict=True)),
            constraints=[{"type": "ineq", "fun": lambda d, m=margin: -np.sign(m) * (m + pull @ d)}],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert solved.success
        assert radii[row] == pytest.approx(np.sqrt(solved.fun), rel=1e-4, abs=1e-7)
        checked += 1
    assert checked > 10


@pytest.mark.parametrize(
    ("estimator", "reason"),
    [
        (SVC(kernel="rbf"), "no linear decision function"),
        (make_pipeline(StandardScaler(), SVC(kernel="poly")), "no linear decision function"),
        (Ridge(), "not a classifier"),
    ],
)
def test_non_linear_models_are_refused(estimator: object, reason: str) -> None:
    frame, labels = _gaussian()
    estimator.fit(frame, labels)  # type: ignore[attr-defined]
    with pytest.raises(NotLinear, match=reason):
        hyperplane(estimator, 4)


def test_more_than_two_classes_are_refused() -> None:
    frame, labels = _gaussian()
    model = LogisticRegression().fit(frame, labels + (frame["d"] > 1).to_numpy())
    with pytest.raises(NotLinear, match="more than two classes"):
        hyperplane(model, 4)
