"""Tree-ensemble verification: exact extraction, and radii that are really certified."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.robustness.hopskipjump import AttackSettings, hop_skip_jump
from mlaudit.robustness.oracle import Oracle
from mlaudit.robustness.space import FeatureSpace
from mlaudit.robustness.trees import UnsupportedEnsemble, Verifier, leaf_table


def _data(rows: int = 260) -> tuple[pd.DataFrame, pd.Series]:
    features, labels = load_breast_cancer(return_X_y=True, as_frame=True)
    # LightGBM renames columns with spaces in its feature_names_in_.
    features.columns = [c.replace(" ", "_") for c in features.columns]
    return features.iloc[:rows, :6], labels.iloc[:rows]


def _ensembles() -> list[tuple[str, object, bool]]:
    import lightgbm
    import xgboost

    return [
        ("random forest", RandomForestClassifier(n_estimators=15, random_state=0), True),
        ("extra trees", ExtraTreesClassifier(n_estimators=10, random_state=0), True),
        ("gradient boosting", GradientBoostingClassifier(n_estimators=20, random_state=0), True),
        ("xgboost", xgboost.XGBClassifier(n_estimators=20, max_depth=3), True),
        ("lightgbm", lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1), True),
        ("forest regressor", RandomForestRegressor(n_estimators=10, random_state=0), False),
        ("boosting regressor", GradientBoostingRegressor(n_estimators=20, random_state=0), False),
    ]


@pytest.mark.parametrize(
    ("name", "estimator", "classifier"), _ensembles(), ids=[e[0] for e in _ensembles()]
)
def test_certified_radius_is_below_every_real_flip(
    name: str, estimator: object, classifier: bool
) -> None:
    """Soundness: no point closer than the certified radius changes the decision."""
    features, labels = _data()
    target = labels if classifier else features["mean_radius"] * 3 + labels
    estimator.fit(features, target)  # type: ignore[attr-defined]
    probe = features.iloc[200:230].reset_index(drop=True)
    table = leaf_table(estimator, probe)
    space = FeatureSpace.from_data([features])
    verifier = Verifier(table, space, "linf")
    model = wrap_estimator(estimator, "test", name)
    clean = model.predict(probe)
    tolerance = None if classifier else 0.1 * float(np.std(clean))
    classes = list(table.classes or ())
    raw = probe.to_numpy(dtype=np.float64)
    radii = np.array(
        [
            verifier.radius(
                raw[i],
                classes.index(clean[i]) if classifier else None,
                reference=float(clean[i]),
                tolerance=tolerance,
            )
            for i in range(len(probe))
        ]
    )
    oracle = Oracle(model, space, probe, clean, tolerance)
    rows = np.arange(len(probe))
    attack = hop_skip_jump(
        oracle,
        rows,
        AttackSettings("linf", 400),
        np.random.default_rng(0),
        donors=space.to_unit(probe),
        donor_outputs=clean,
    )
    assert np.all(radii <= attack.distance + 1e-9)
    # Random points strictly inside each certified ball keep their decision.
    rng = np.random.default_rng(1)
    origin = space.to_unit(probe)
    for _ in range(5):
        reach = np.minimum(radii, space.extent.max())[:, None] * 0.999
        inside = origin + rng.uniform(-1, 1, origin.shape) * reach
        assert not oracle.adversarial(rows, space.clip(inside), cached=False).any()
    assert radii.max() > 0


def test_binary_forest_radius_matches_a_brute_force_search() -> None:
    """On one feature the true radius is the distance to the nearest flipping point."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.uniform(0, 1, 300)})
    labels = (frame["x"] + rng.normal(0, 0.1, 300) > 0.5).astype(int)
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(frame, labels)
    space = FeatureSpace.from_data([frame])
    verifier = Verifier(leaf_table(forest, frame.iloc[:50]), space, "linf")
    grid = np.linspace(space.lower[0], space.upper[0], 20001)
    answers = forest.predict(pd.DataFrame({"x": grid}))
    unit = space.scale[0]
    ratios = []
    for value in frame["x"].iloc[:40]:
        label = forest.predict(pd.DataFrame({"x": [value]}))[0]
        flips = grid[answers != label]
        exact = np.min(np.abs(flips - value)) / unit if len(flips) else np.inf
        radius = verifier.radius(np.array([value]), int(label))
        assert radius <= exact + 1e-4
        if np.isfinite(exact):
            ratios.append(radius / exact)
    # Trees are bounded one by one, so the bound is loose, but not vacuous.
    assert np.median(ratios) > 0.5


def test_immutable_features_are_held_in_their_box() -> None:
    features, labels = _data()
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(features, labels)
    raw = features.to_numpy(dtype=np.float64)
    label = int(forest.predict(features.iloc[:1])[0])
    free = Verifier(leaf_table(forest, features), FeatureSpace.from_data([features]), "linf")
    held = Verifier(
        leaf_table(forest, features),
        FeatureSpace.from_data([features], immutable=list(features.columns[:3])),
        "linf",
    )
    assert held.radius(raw[0], label) >= free.radius(raw[0], label)


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(),
        make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3)),
    ],
)
def test_other_models_are_unsupported_with_a_reason(estimator: object) -> None:
    features, labels = _data()
    estimator.fit(features, labels)  # type: ignore[attr-defined]
    with pytest.raises(UnsupportedEnsemble, match="applies to tree ensembles"):
        leaf_table(estimator, features)


@pytest.mark.parametrize(
    ("name", "estimator", "classifier"), _ensembles()[:3] + _ensembles()[5:6],
    ids=[e[0] for e in _ensembles()[:3] + _ensembles()[5:6]],
)
def test_the_fast_radius_search_gives_the_full_sweep_s_radius_exactly(
    name: str, estimator: object, classifier: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sparse leaf distances are the dense ones, and sweeping the nearest leaves first
    (here a handful at a time, so every row needs several rounds) finds the radius the
    sweep over every leaf finds, to the last bit."""
    from mlaudit.robustness import trees

    features, labels = _data()
    target = labels if classifier else features["mean_radius"] * 3 + labels
    estimator.fit(features, target)  # type: ignore[attr-defined]
    probe = features.iloc[200:230].reset_index(drop=True)
    table = leaf_table(estimator, probe)
    verifier = Verifier(table, FeatureSpace.from_data([features]), "linf")
    raw = probe.to_numpy(dtype=np.float64)
    clean = estimator.predict(probe)  # type: ignore[attr-defined]
    classes = list(table.classes or ())
    tolerance = None if classifier else 0.1 * float(np.std(clean))

    def radii() -> list[float]:
        return [
            verifier.radius(
                raw[i], classes.index(clean[i]) if classifier else None,
                reference=float(clean[i]), tolerance=tolerance,
            )
            for i in range(len(probe))
        ]

    space = verifier.space
    low, high = (table.lower - space.lower) / space.scale, (table.upper - space.lower) / space.scale
    for row in raw:
        x = (row - space.lower) / space.scale
        dense = np.maximum(np.maximum(low - x, x - high), 0.0).max(axis=1)
        assert np.array_equal(
            verifier._leaf_distances(row), np.where(verifier.unreachable, np.inf, dense)
        )
    monkeypatch.setattr(trees, "_FIRST_SWEEP", 1 << 40)
    whole = radii()
    monkeypatch.setattr(trees, "_FIRST_SWEEP", 4)
    assert radii() == whole
    assert any(np.isfinite(whole))
