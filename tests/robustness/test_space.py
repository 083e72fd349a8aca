"""The attack space: frozen features, integer realisation, scaling and distances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlaudit.core.errors import ConfigError
from mlaudit.robustness.space import FeatureSpace, distance, project, within


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20, 30, 40, 60],
            "ratio": [0.1, 0.5, 0.2, 0.9],
            "const": [1.0, 1.0, 1.0, 1.0],
            "city": ["a", "b", "a", "c"],
            "flag": [True, False, True, True],
            "zip": [1000, 2000, 3000, 4000],
        }
    )


def test_frozen_features_and_their_reasons() -> None:
    space = FeatureSpace.from_data([_frame()], immutable=["zip"])
    assert space.mutable_columns == ("age", "ratio")
    assert space.describe()["frozen"] == {
        "const": "constant in the data",
        "city": "not numeric",
        "flag": "boolean",
        "zip": "immutable (configured)",
    }
    assert list(space.integer) == [True, False]
    np.testing.assert_allclose(space.lower, [20, 0.1])
    np.testing.assert_allclose(space.upper, [60, 0.9])


def test_unknown_configured_feature_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="postcode"):
        FeatureSpace.from_data([_frame()], categorical=["postcode"])


def test_ranges_span_every_frame() -> None:
    other = _frame().assign(age=[10, 10, 10, 99])
    space = FeatureSpace.from_data([_frame(), other])
    np.testing.assert_allclose(space.lower[0], 10)
    np.testing.assert_allclose(space.upper[0], 99)


def test_frame_keeps_frozen_values_and_integer_dtypes() -> None:
    frame = _frame()
    space = FeatureSpace.from_data([frame], immutable=["zip"])
    # Ages 30.4 (rounds to 30) and 19 (clips to 20); ratios 2.0 (clips to 0.9) and 0.5.
    unit = (np.array([[30.4, 2.0], [19.0, 0.5]]) - space.lower) / space.scale
    out = space.frame(frame, np.array([3, 1]), unit)
    assert list(out.columns) == list(frame.columns)
    assert out["age"].tolist() == [30, 20]
    assert out["age"].dtype == frame["age"].dtype
    assert out["ratio"].tolist() == pytest.approx([0.9, 0.5])
    assert out["city"].tolist() == ["c", "b"]
    assert out["zip"].tolist() == [4000, 2000]


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (5, 2), elements=st.floats(-3, 3)))
def test_realised_points_exist_and_realising_is_idempotent(unit: np.ndarray) -> None:
    space = FeatureSpace.from_data([_frame()], immutable=["zip"])
    real = space.realise(unit)
    assert np.all((real >= 0) & (real <= space.extent))
    ages = space.to_raw(real)[:, 0]
    np.testing.assert_allclose(ages, np.round(ages))
    np.testing.assert_allclose(space.realise(real), real)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (4, 3), elements=st.floats(-1, 1)))
def test_distances_are_norms_on_the_same_scale(delta: np.ndarray) -> None:
    linf, l2 = distance(delta, "linf"), distance(delta, "l2")
    np.testing.assert_allclose(linf, np.abs(delta).max(axis=1))
    # RMS never exceeds the largest coordinate: one ε grid reads the same for both norms.
    assert np.all(l2 <= linf + 1e-12)
    # Squares of tiny coordinates underflow to subnormals, where scaling is not exact.
    np.testing.assert_allclose(distance(2 * delta, "l2"), 2 * l2, atol=1e-100)


def test_units_are_robust_spreads_not_ranges() -> None:
    rng = np.random.default_rng(0)
    normal = rng.normal(5.0, 2.0, 4000)
    normal[0] = 1e6  # one outlier stretches the range, not the unit
    sparse = np.where(rng.random(4000) < 0.9, 0.0, rng.integers(1, 17, 4000)).astype(float)
    space = FeatureSpace.from_data([pd.DataFrame({"normal": normal, "sparse": sparse})])
    assert space.spread == ("iqr", "std")
    # IQR/1.349 is the standard deviation of normal data.
    assert space.scale[0] == pytest.approx(2.0, rel=0.05)
    assert space.scale[1] == pytest.approx(np.std(sparse))
    assert space.describe()["unit"]["sparse"]["spread"] == "std"


def test_feature_epsilon_stretches_units_and_zero_freezes() -> None:
    frame = pd.DataFrame(
        {"pixel_1": [0, 4, 8, 16], "pixel_2": [0, 2, 8, 16], "age": [20, 30, 40, 60]}
    )
    plain = FeatureSpace.from_data([frame])
    space = FeatureSpace.from_data([frame], relative_epsilon={"pixel_*": 4.0, "age": 0.0})
    assert space.mutable_columns == ("pixel_1", "pixel_2")
    assert space.describe()["frozen"] == {"age": "ε of 0 (configured)"}
    np.testing.assert_allclose(space.scale, 4.0 * plain.scale[:2])
    with pytest.raises(ConfigError, match="income"):
        FeatureSpace.from_data([frame], relative_epsilon={"income": 2.0})


def test_epsilon_below_one_integer_step_is_named() -> None:
    frame = pd.DataFrame({"pixel": [0, 4, 8, 12, 16] * 4, "ratio": np.linspace(0, 1, 20)})
    space = FeatureSpace.from_data([frame])
    step = 1.0 / space.scale[0]  # one grey level, in units
    assert space.below_step(0.99 * step) == ("pixel",)
    assert space.below_step(step) == ()


def test_float32_overshoot_is_within_but_a_real_one_is_not() -> None:
    epsilon = 0.05
    delta = np.array([[epsilon + 4e-8, -0.01], [epsilon * 1.001, 0.0]])
    assert within(delta, epsilon, "linf", np.dtype(np.float32)).tolist() == [True, False]
    # float64 arithmetic is held to float64's precision.
    assert within(delta, epsilon, "linf", np.dtype(np.float64)).tolist() == [False, False]


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (4, 3), elements=st.floats(-2, 2)), st.sampled_from(["linf", "l2"]))
def test_projection_lands_in_the_ball_and_keeps_what_is_inside(
    delta: np.ndarray, norm: str
) -> None:
    projected = project(delta, 0.3, norm)
    assert np.all(within(projected, 0.3, norm, np.dtype(np.float64)))
    inside = distance(delta, norm) <= 0.3
    np.testing.assert_allclose(projected[inside], delta[inside])
