"""The statistics under MLA701 and MLA704: Wilson intervals, PSI, binning, the correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlaudit.core.stats import wilson
from mlaudit.data.drift import (
    MISSING_BIN,
    OTHER_BIN,
    Binned,
    adjusted_p_values,
    categorical_bins,
    column_drift,
    psi,
    psi_interval,
)
from mlaudit.data.profile import Kind, profile_chunks, uniform_sample


def test_wilson_matches_statsmodels_reference_values() -> None:
    # statsmodels.stats.proportion.proportion_confint(5, 100, method="wilson")
    interval = wilson(5, 100)
    assert interval.low == pytest.approx(0.021543679, abs=1e-8)
    assert interval.high == pytest.approx(0.111750469, abs=1e-8)
    assert (wilson(0, 50).low, wilson(50, 50).high) == (0.0, 1.0)
    with pytest.raises(ValueError, match="at least one trial"):
        wilson(0, 0)


def test_psi_of_identical_shares_is_zero_and_grows_with_the_shift() -> None:
    shares = np.array([0.25, 0.25, 0.5])
    assert float(psi(shares, shares)) == 0.0
    small = float(psi(shares, np.array([0.3, 0.2, 0.5])))
    large = float(psi(shares, np.array([0.6, 0.1, 0.3])))
    assert 0 < small < large
    # An empty bin is floored, never infinite.
    assert np.isfinite(psi(np.array([1.0, 0.0]), np.array([0.5, 0.5])))


def test_numeric_bins_are_reference_deciles_with_a_missing_bin() -> None:
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(size=10_000), name="x")
    current = pd.Series(np.append(rng.normal(size=9_000), [np.nan] * 1_000), name="x")
    drift = column_drift(reference, current, bins=10, rng=rng)
    assert drift is not None
    binned = drift.binned
    assert len(binned.labels) == 11
    assert binned.labels[-1] == MISSING_BIN
    ref_shares, cur_shares = binned.shares()
    assert np.allclose(ref_shares[:10], 0.1, atol=0.002)
    assert cur_shares[-1] == pytest.approx(0.1)


def test_categorical_bins_gather_rare_and_unseen_categories() -> None:
    reference = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    current = pd.Series(["a"] * 40 + ["new"] * 60)
    binned = categorical_bins(reference, current, 3)
    assert binned.labels == ("a", "b", OTHER_BIN)
    assert binned.current.tolist() == [40, 0, 60]


def test_psi_interval_contains_the_estimate_and_narrows_with_more_rows() -> None:
    rng = np.random.default_rng(1)
    few = Binned(("x", "y"), np.array([60, 40]), np.array([40, 60]))
    many = Binned(("x", "y"), np.array([6000, 4000]), np.array([4000, 6000]))
    small, large = psi_interval(few, rng), psi_interval(many, rng)
    assert small.low <= small.estimate <= small.high
    assert small.estimate == pytest.approx(large.estimate)
    assert large.high - large.low < small.high - small.low


def test_column_drift_tests_numbers_with_ks_and_categories_with_chi2() -> None:
    rng = np.random.default_rng(2)
    same = column_drift(pd.Series(rng.normal(size=2000), name="x"),
                        pd.Series(rng.normal(size=2000), name="x"), bins=10, rng=rng)
    assert same is not None
    assert same.test == "ks"
    assert same.p_value > 0.01
    assert same.psi.estimate < 0.05
    moved = column_drift(pd.Series(rng.choice(["a", "b"], 2000), name="c"),
                         pd.Series(rng.choice(["a", "b"], 2000, p=[0.9, 0.1]), name="c"),
                         bins=10, rng=rng)
    assert moved is not None
    assert moved.test == "chi2"
    assert moved.kind is Kind.CATEGORICAL
    assert moved.p_value < 1e-6
    assert moved.psi.estimate > 0.25


def test_missing_values_count_in_a_numeric_drift_test() -> None:
    """KS sees only the values: a column that lost a fifth of its values still drifted."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=3000)
    current = pd.Series(np.where(rng.random(3000) < 0.2, np.nan, values), name="x")
    drift = column_drift(pd.Series(rng.normal(size=3000), name="x"), current, bins=10, rng=rng)
    assert drift is not None
    assert drift.test == "ks+chi2"
    assert drift.p_value < 1e-6


def test_benjamini_hochberg_matches_scipy_and_bonferroni_multiplies() -> None:
    p_values = [0.001, 0.01, 0.03, 0.2]
    assert adjusted_p_values(p_values, "benjamini-hochberg") == pytest.approx(
        stats.false_discovery_control(p_values, method="bh")
    )
    assert adjusted_p_values(p_values, "bonferroni") == pytest.approx([0.004, 0.04, 0.12, 0.8])
    assert adjusted_p_values(p_values, "none") == p_values
    assert adjusted_p_values([], "bonferroni") == []


def test_profiles_count_exactly_and_sample_only_the_top_share() -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"x": np.append(np.zeros(9_990), rng.normal(size=10))})
    frame.loc[:4, "x"] = np.nan
    chunks = [frame.iloc[:4_000], frame.iloc[4_000:]]  # as a file streamed in two chunks
    sample = frame.iloc[uniform_sample(10_000, 500, rng)]
    [profile] = profile_chunks(chunks, ["x"], max_categories=10, sample=sample).values()
    assert (profile.rows, profile.missing) == (10_000, 5)
    assert profile.minimum == float(frame["x"].min())
    assert not profile.constant
    assert profile.top_rows <= 500
    assert profile.top_share > 0.97
    text = pd.DataFrame({"m": ["1", "2", "x", None, "2"]})
    [mixed] = profile_chunks([text], ["m"], max_categories=1, sample=text).values()
    assert (mixed.numeric_values, mixed.text_values, mixed.categories) == (3, 1, None)


def test_a_profile_against_training_counts_outside_and_unseen_values_exactly() -> None:
    train = pd.DataFrame({"x": [0.0, 1.0, 2.0], "c": ["a", "b", "a"]})
    trained = profile_chunks([train], ["x", "c"], max_categories=10, sample=train)
    current = pd.DataFrame({"x": [-1.0, 1.0, 3.0, 5.0], "c": ["a", "z", "z", None]})
    profiles = profile_chunks([current.iloc[:2], current.iloc[2:]], ["x", "c"],
                              max_categories=10, sample=current, reference=trained)
    assert (profiles["x"].below, profiles["x"].above) == (1, 2)
    assert profiles["c"].unseen == {"z": 2}
