"""MLA702: fires on mismatched data, quiet on data that fits the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
    # The data's labels and the model's classes, each named as what it is.
    assert "hold labels the model does not know (benign, malignant); the model's classes " \
        "are 0, 1." in labels["message"]
    # A random forest splits on missing values itself (scikit-learn >= 1.4): not a problem.
    assert "Missing values in a model input" not in findings
    assert findings["Columns the model does not use"]["evidence"]["columns"] == [
        "customer_email"
    ]
    assert "Columns in a different order than the model's" in findings
    assert result.exit_code == 1  # the high finding fails the default gate


def test_mla702_fires_on_mixed_types(run_cli: Runner, workspace: Workspace, tmp_path: Path) -> None:
    frame = pd.read_csv(workspace.holdout)
    # Past the rows the load check predicts on: an export that wrote text into a number column.
    frame["mean_texture"] = frame["mean_texture"].astype(object)
    frame.loc[len(frame) - 3 :, "mean_texture"] = "unknown"
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    result = run_cli("scan", workspace.rf_joblib, "--data", data, "--target", TARGET,
                     "--select", "MLA702")
    [mixed] = result.result("MLA702")["findings"]
    assert mixed["title"] == "Non-numeric values in a numeric model input"
    assert mixed["evidence"] == {"non_numeric_rows": 3}


def _pipeline_scan(
    run_cli: Runner, tmp_path: Path, model: object, fitted_on: pd.DataFrame,
    audited: pd.DataFrame,
) -> list[dict[str, object]]:
    """MLA702's findings for ``model`` fitted on ``fitted_on`` and audited on ``audited``."""
    import skops.io

    model.fit(fitted_on.drop(columns=["y"]), fitted_on["y"])  # type: ignore[attr-defined]
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "m.skops"
    skops.io.dump(model, path)
    data = tmp_path / "d.csv"
    audited.to_csv(data, index=False)
    result = run_cli("scan", path, "--data", data, "--target", "y", "--select", "MLA702")
    findings: list[dict[str, object]] = result.result("MLA702")["findings"]
    return findings


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "imputed": rng.normal(size=rows), "raw": rng.normal(size=rows),
        "colour": rng.choice(["red", "green"], rows), "y": rng.integers(0, 2, rows),
    })


def test_mla702_reads_the_pipeline_before_calling_missing_values_a_problem(
    run_cli: Runner, tmp_path: Path
) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    audited = _frame(200, 1)
    audited.loc[20:, "imputed"] = np.nan  # 90% missing: the pipeline imputes every one
    audited.loc[190:, "raw"] = np.nan  # 5%: nothing in the pipeline handles these
    linear = make_pipeline(
        make_column_transformer(
            (SimpleImputer(), ["imputed"]), (OneHotEncoder(), ["colour"]),
            remainder="passthrough",
        ),
        LogisticRegression(),
    )
    findings = _pipeline_scan(run_cli, tmp_path / "linear", linear, _frame(200, 0), audited)
    [missing] = findings
    assert missing["location"] == {"artifact": str(tmp_path / "linear" / "d.csv"), "line": None,
                                   "column": None, "pointer": "raw"}
    assert missing["severity"] == "low"  # not medium past 5%: the share is in the evidence
    assert missing["evidence"] == {"missing_rows": 10, "share": 0.05}
    boosting = HistGradientBoostingClassifier(max_iter=5, categorical_features=["colour"])
    assert _pipeline_scan(
        run_cli, tmp_path / "boosting", boosting, _frame(200, 0), audited
    ) == []


@pytest.mark.parametrize(
    ("handle_unknown", "severity"), [("ignore", "info"), ("error", "medium")]
)
def test_mla702_unseen_categories_depend_on_the_encoders_handle_unknown(
    run_cli: Runner, tmp_path: Path, handle_unknown: str, severity: str
) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    audited = _frame(100, 1)
    audited.loc[95:, "colour"] = "blue"  # after the load check's rows
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown=handle_unknown), ["colour"]),
                                remainder="passthrough"),
        LogisticRegression(),
    )
    [unseen] = _pipeline_scan(run_cli, tmp_path, model, _frame(100, 0), audited)
    assert unseen["title"] == "Categories the model's encoder never saw"
    assert unseen["severity"] == severity
    assert unseen["evidence"] == {"rows": 5, "categories": ["blue"],
                                  "handle_unknown": handle_unknown}
