"""MLA702: fires on mismatched data, quiet on data that fits the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import TARGET, Runner, Workspace


def test_mla702_quiet_on_matching_data(run_cli: Runner, workspace: Workspace) -> None:
    result = run_cli("scan", workspace.rf_joblib, "--train", workspace.train,
                     "--holdout", workspace.holdout, "--target", TARGET)
    mla702 = result.result("MLA702")
    assert mla702["status"] == "passed"
    assert mla702["findings"] == []
    assert mla702["metrics"]["holdout_rows"] == 229


def test_mla702_fires_on_unknown_labels_missing_values_and_extra_columns(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    frame = pd.read_csv(workspace.holdout)
    frame[TARGET] = frame[TARGET].map({0: "benign", 1: "malignant"})
    frame.loc[: len(frame) // 5, "mean_radius"] = np.nan
    frame["customer_email"] = "x@example.org"
    frame = frame[[*reversed(frame.columns)]]
    path = tmp_path / "skewed.csv"
    frame.to_csv(path, index=False)
    result = run_cli("scan", workspace.rf_joblib, "--data", path, "--target", TARGET)
    findings = {f["title"]: f for f in result.result("MLA702")["findings"]}
    labels = findings["Target labels the model cannot predict"]
    assert labels["severity"] == "high"
    assert labels["evidence"]["unknown_labels"] == ["benign", "malignant"]
    assert findings["Missing values in a model input"]["location"]["pointer"] == "mean_radius"
    assert findings["Columns the model does not use"]["evidence"]["columns"] == [
        "customer_email"
    ]
    assert "Columns in a different order than the model's" in findings
    assert result.exit_code == 1  # the high finding fails the default gate


def test_mla702_fires_on_mixed_types(run_cli: Runner, workspace: Workspace, tmp_path: Path) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    frame = pd.DataFrame({"size": ["1", "2", "3", "unknown"] * 10, "y": [0, 1] * 20})
    pipeline = make_pipeline(
        make_column_transformer((make_pipeline(SimpleImputer(strategy="most_frequent"),
                                               OrdinalEncoder()), ["size"])),
        RandomForestClassifier(n_estimators=3, random_state=0),
    ).fit(frame[["size"]], frame["y"])
    import skops.io

    model = tmp_path / "m.skops"
    skops.io.dump(pipeline, model)
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    result = run_cli("scan", model, "--data", data, "--target", "y")
    titles = [f["title"] for f in result.result("MLA702")["findings"]]
    assert "Non-numeric values in a numeric model input" in titles
