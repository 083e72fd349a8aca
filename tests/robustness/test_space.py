"""The attack space: frozen features, integer realisation, scaling and distances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlaudit.errors import ConfigError
from mlaudit.robustness.space import FeatureSpace, distance


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
    unit = np.array([[0.26, 2.0], [-1.0, 0.5]])
    out = space.frame(frame, np.array([3, 1]), unit)
    assert list(out.columns) == list(frame.columns)
    assert out["age"].tolist() == [30, 20]  # 20 + 0.26 * 40 = 30.4 rounds; -1 clips to 20
    assert out["age"].dtype == frame["age"].dtype
    assert out["ratio"].tolist() == pytest.approx([0.9, 0.5])
    assert out["city"].tolist() == ["c", "b"]
    assert out["zip"].tolist() == [4000, 2000]


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (5, 2), elements=st.floats(-3, 3)))
def test_realised_points_exist_and_realising_is_idempotent(unit: np.ndarray) -> None:
    space = FeatureSpace.from_data([_frame()], immutable=["zip"])
    real = space.realise(unit)
    assert np.all((real >= 0) & (real <= 1))
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
    np.testing.assert_allclose(distance(2 * delta, "l2"), 2 * l2)
