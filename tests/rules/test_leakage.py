"""MLA703: fires on planted leaks (label plus noise, rows shared by train and holdout), quiet on
clean data. The full panel of leak kinds and clean datasets is bench/leakage_panel.py."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlaudit.core.findings import Finding, Severity, Status
from mlaudit.data import leakage
from mlaudit.rules.data import Leakage
from mlaudit.testing import assert_rule_contract, make_subject, run_rule

Y = "y"


def _frame(loader: object) -> pd.DataFrame:
    frame: pd.DataFrame = loader(as_frame=True).frame  # type: ignore[operator]
    frame = frame.rename(columns={"target": Y})
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


def _scan(
    tmp_path: Path, train: pd.DataFrame, holdout: pd.DataFrame, *, regression: bool = False
) -> tuple[Status, list[Finding], dict[str, object]]:
    """MLA703 on ``train``/``holdout`` with a linear model fitted on train, as a scan runs it."""
    estimator = Ridge() if regression else LogisticRegression(max_iter=5000)
    model = make_pipeline(StandardScaler(), estimator)
    model.fit(train.drop(columns=[Y]), train[Y])
    joblib.dump(model, tmp_path / "model.joblib")
    train.to_csv(tmp_path / "train.csv", index=False)
    holdout.to_csv(tmp_path / "holdout.csv", index=False)
    subject = make_subject(tmp_path / "model.joblib", train=tmp_path / "train.csv",
                           holdout=tmp_path / "holdout.csv", target=Y)
    result = run_rule(Leakage, subject)
    return result.status, list(result.findings), dict(result.metrics)


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, holdout = train_test_split(frame, test_size=0.25, random_state=0)
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def test_contract() -> None:
    assert_rule_contract(Leakage)


def test_label_plus_noise_is_high_and_explains_the_perfect_model(tmp_path: Path) -> None:
    frame = _frame(load_breast_cancer)
    frame["review_score"] = frame[Y] + np.random.default_rng(0).normal(0, 0.05, len(frame))
    status, findings, metrics = _scan(tmp_path, *_split(frame))
    assert status is Status.FAILED
    [leak] = findings
    assert leak.severity is Severity.HIGH
    assert leak.location.pointer == "review_score"
    assert leak.title == "Column is a transform of the target"
    assert "near-perfect on its own" in leak.message
    assert leak.evidence["model_takes_column"] is True
    # The model it makes perfect is the one audited, not a stand-in.
    assert metrics["full_model"] == "the loaded model"
    assert metrics["full_model_accuracy"] == 1.0


def test_rows_shared_with_train_exactly_and_after_normalisation(tmp_path: Path) -> None:
    train, holdout = _split(_frame(load_breast_cancer))
    holdout.iloc[:30] = train.iloc[:30].to_numpy()
    features = [c for c in train.columns if c != Y]
    holdout.loc[20:29, features] *= 1 + 1e-10  # re-exported: equal only to 6 digits
    status, findings, _ = _scan(tmp_path, train, holdout[holdout.columns[::-1]])
    assert status is Status.FAILED
    [shared] = [f for f in findings if f.title == "Holdout rows that are also in train"]
    assert shared.severity is Severity.HIGH
    assert shared.evidence["exact"] == 20
    assert shared.evidence["after_normalisation"] == 30
    assert shared.evidence["holdout_row_examples"] == [0, 1, 2, 3, 4]
    share = shared.evidence["share"]
    assert isinstance(share, dict)
    assert share["low"] < 30 / len(holdout) < share["high"]


@pytest.mark.parametrize("loader", [load_breast_cancer, load_diabetes])
def test_quiet_on_clean_data(tmp_path: Path, loader: object) -> None:
    status, findings, metrics = _scan(tmp_path, *_split(_frame(loader)),
                                      regression=loader is load_diabetes)
    assert (status, findings) == (Status.PASSED, [])
    assert metrics["task"] == ("regression" if loader is load_diabetes else "classification")
    strongest = metrics["strongest_columns"]
    assert isinstance(strongest, list)
    assert len(strongest) == 5


def test_skipped_without_a_holdout(tmp_path: Path) -> None:
    train, _ = _split(_frame(load_breast_cancer))
    train.to_csv(tmp_path / "train.csv", index=False)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    model.fit(train.drop(columns=[Y]), train[Y])
    joblib.dump(model, tmp_path / "model.joblib")
    result = run_rule(Leakage, make_subject(tmp_path / "model.joblib",
                                            train=tmp_path / "train.csv", target=Y))
    assert result.status is Status.SKIPPED
    assert result.reason == "needs both --train (members) and --holdout (non-members)"


def test_split_by_identifier_order_and_a_reference_model_without_one() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"record_id": np.arange(1000), "x": rng.normal(size=1000)})
    frame[Y] = (frame["x"] + rng.normal(size=1000) > 0).astype(int)
    train, holdout = frame.iloc[:750], frame.iloc[750:]
    [separator], examined = leakage.split_separators(train, holdout, Y, 0.9)
    assert (separator.column, separator.kind, examined) == (
        "record_id", leakage.SeparatorKind.IDENTIFIER, 1
    )
    assert separator.holdout_later.estimate == 1.0
    shuffled = frame.sample(frac=1.0, random_state=0)
    assert leakage.split_separators(shuffled.iloc[:750], shuffled.iloc[750:], Y, 0.9)[0] == []
    # Without a loaded model the column is compared with a reference model fitted on train.
    split = leakage.make_split(shuffled.iloc[:750], shuffled.iloc[750:], Y)
    predictions = leakage.reference_predictions(split, seed=0)
    thresholds = leakage.LeakageThresholds(0.9, 0.02, 0.5, 0.98, 0.01, 6, 0.9)
    found, full, _, _ = leakage.target_leaks(split, predictions, thresholds,
                                             np.random.default_rng(0), seed=0)
    assert found == []
    assert 0.2 < full.skill < 0.8
