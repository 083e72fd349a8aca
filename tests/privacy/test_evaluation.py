"""The evaluation data: balanced and seeded, overlap excluded, schema compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.privacy.evaluation import (
    InvalidEvaluation,
    membership_data,
    privacy_rng,
    schema_differences,
)
from tests.privacy.fixtures import TARGET, clean_frame, regularised, write_subject


def test_balanced_seeded_and_capped(tmp_path: Path) -> None:
    subject = write_subject(tmp_path, regularised(), clean_frame(300, 1), clean_frame(120, 2))
    model = wrap_estimator(
        regularised().fit(*_xy(clean_frame(300, 1))), "scikit-learn", "m"
    )
    data = membership_data(subject, model, seed=0, max_rows=1000)
    assert data.member.sum() == (~data.member).sum() == 120
    again = membership_data(subject, model, seed=0, max_rows=1000)
    np.testing.assert_array_equal(data.targets, again.targets)
    other = membership_data(subject, model, seed=1, max_rows=1000)
    assert not np.array_equal(data.targets, other.targets)
    capped = membership_data(subject, model, seed=0, max_rows=50)
    assert capped.metrics()["members"] == capped.metrics()["non_members"] == 50


def test_too_few_rows_after_exclusion_is_invalid(tmp_path: Path) -> None:
    train = clean_frame(100, 1)
    subject = write_subject(tmp_path, regularised(), train, train.iloc[:90])
    model = wrap_estimator(regularised().fit(*_xy(train)), "scikit-learn", "m")
    with pytest.raises(InvalidEvaluation, match="excluding 90 holdout rows"):
        membership_data(subject, model, seed=0, max_rows=1000)


def test_unknown_labels_are_excluded(tmp_path: Path) -> None:
    holdout = clean_frame(100, 2)
    holdout.loc[:9, TARGET] = 7
    subject = write_subject(tmp_path, regularised(), clean_frame(100, 1), holdout)
    model = wrap_estimator(regularised().fit(*_xy(clean_frame(100, 1))), "scikit-learn", "m")
    data = membership_data(subject, model, seed=0, max_rows=1000)
    assert data.unknown_label_rows == 10
    assert data.metrics()["non_members"] == 90


def test_schema_differences_name_the_column() -> None:
    numbers = pd.DataFrame({"a": [1.0, 2.0], "b": [1, 2]})
    text = numbers.assign(b=["1", "x"])
    assert schema_differences(numbers, numbers.astype({"b": float})) == []
    [difference] = schema_differences(numbers, text)
    assert difference.startswith("column 'b' is int64 in train but ")
    assert "model input columns differ" in schema_differences(numbers, numbers[["b", "a"]])[0]


def test_privacy_generators_depend_on_seed_and_purpose() -> None:
    draw = privacy_rng(0, "a").random()
    assert draw == privacy_rng(0, "a").random()
    assert draw != privacy_rng(1, "a").random()
    assert draw != privacy_rng(0, "b").random()


def _xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return frame.drop(columns=[TARGET]), frame[TARGET]
