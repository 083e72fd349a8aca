"""MLA704: drift between reference and current data, through the API and the CLI."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from mlaudit import scan
from mlaudit.reports.html import HtmlRenderer
from mlaudit.rules.data import Drift
from mlaudit.testing import assert_rule_contract
from tests.conftest import Runner, _Hostile
from tests.rules.data_fixtures import forest, frame
from tests.test_report import validate


def _mla704(train: pd.DataFrame, current: pd.DataFrame, **kwargs: Any) -> dict[str, Any]:
    audit = scan(forest(train), train=train, current=current, target="y", select="MLA704",
                 **kwargs)
    [result] = audit.to_dict()["results"]
    return result


def test_contract() -> None:
    assert_rule_contract(Drift)


def test_quiet_on_current_data_from_the_same_population() -> None:
    result = _mla704(frame(seed=0), frame(seed=5))
    assert result["status"] == "passed"
    assert result["findings"] == []
    metrics = result["metrics"]
    assert metrics["drifted_features"] == []
    assert metrics["features_compared"] == 4
    assert metrics["prediction_drift"]["drifted"] is False
    # The current data has labels: the accuracy there against the training data's.
    assert metrics["performance"]["measured"] is True


def test_fires_per_drifted_feature_on_the_predictions_and_on_accuracy() -> None:
    current = frame(seed=5, shift=1.5)
    current["y"] = 1 - current["y"]  # labels flipped: accuracy collapses
    holdout = frame(seed=1)
    result = _mla704(frame(seed=0), current, holdout=holdout)
    findings = {f["fingerprint"]: f for f in result["findings"]}
    titles = sorted(f["title"] for f in findings.values())
    assert titles == ["Feature drifted", "The model's accuracy dropped on current data",
                      "The model's predictions drifted"]
    [feature] = [f for f in findings.values() if f["title"] == "Feature drifted"]
    assert feature["location"]["pointer"] == "a"
    assert feature["severity"] == "high"
    assert feature["evidence"]["psi"]["low"] > 0.5
    accuracy = next(f for f in findings.values() if "accuracy" in f["title"])
    assert accuracy["severity"] == "high"
    assert accuracy["evidence"]["baseline_role"] == "holdout"
    assert result["metrics"]["drifted_features"] == ["a"]
    assert set(result["metrics"]["distributions"]) == {"a", "b", "colour", "size"}


def test_a_dataset_drift_when_most_features_moved() -> None:
    current = frame(seed=5, shift=2.0)
    current["b"] += 2.0
    current["colour"] = "red"
    result = _mla704(frame(seed=0), current, rule_options={"MLA704": {"drift_share": 0.75}})
    assert "The data as a whole drifted" in {f["title"] for f in result["findings"]}
    assert result["metrics"]["drifted_share"] == 0.75


def test_cli_reference_and_current_files_with_plots(run_cli: Runner, tmp_path: Path) -> None:
    train, reference, current = frame(seed=0), frame(seed=1), frame(seed=5, shift=1.5)
    current = current.drop(columns=["y"])  # production data: no labels
    for name, data in (("train", train), ("reference", reference), ("current", current)):
        data.to_csv(tmp_path / f"{name}.csv", index=False)
    joblib.dump(forest(train), tmp_path / "model.joblib")
    result = run_cli("scan", tmp_path / "model.joblib", "--train", tmp_path / "train.csv",
                     "--reference", tmp_path / "reference.csv", "--current",
                     tmp_path / "current.csv", "--target", "y", "--select", "MLA701",
                     "--select", "MLA704", "--format", "html")
    assert result.exit_code == 1, result.stderr
    report = result.report
    validate(report)
    assert [d["role"] for d in report["subject"]["data"]] == ["train", "reference", "current"]
    assert [d["target"] for d in report["subject"]["data"]] == ["y", "y", None]
    drift = result.result("MLA704")
    assert drift["metrics"]["reference"] == "reference"
    assert drift["metrics"]["performance"]["measured"] is False
    assert drift["metrics"]["prediction_drift"]["measured"] is True  # queried in the worker
    page = (result.output_dir / "report.html").read_text()
    assert "Reference and current: a" in page
    assert "Reference and current: prediction_drift" in page
    assert HtmlRenderer().render(report).decode().count("<svg") >= 5


def test_cli_current_file_without_a_reference_column_is_exit_2(
    run_cli: Runner, tmp_path: Path
) -> None:
    train = frame(seed=0)
    train.to_csv(tmp_path / "train.csv", index=False)
    frame(seed=5).drop(columns=["colour", "y"]).to_csv(tmp_path / "current.csv", index=False)
    joblib.dump(forest(train), tmp_path / "model.joblib")
    result = run_cli("scan", tmp_path / "model.joblib", "--train", tmp_path / "train.csv",
                     "--current", tmp_path / "current.csv", "--target", "y")
    assert result.exit_code == 2
    assert result.stderr.startswith("mlaudit: error: current file ")
    assert "lacks 1 column(s) of train file" in result.stderr
    assert "colour" in result.stderr
    assert not (result.output_dir / "report.json").exists()


def test_without_a_loadable_model_only_features_are_compared(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps(_Hostile(tmp_path / "CANARY"), protocol=2))
    current = frame(seed=5, shift=1.5)
    audit = scan(str(hostile), reference=frame(seed=0), current=current, target="y",
                 select="MLA704")
    [result] = audit.to_dict()["results"]
    assert result["metrics"]["prediction_drift"] == {
        "measured": False, "reason": "no model loaded: only the features were compared",
    }
    assert [f["location"]["pointer"] for f in result["findings"]] == ["a"]
    assert not (tmp_path / "CANARY").exists()


def test_skipped_without_current_data() -> None:
    train = frame(seed=0)
    audit = scan(forest(train), train=train, target="y", select="MLA704")
    [result] = audit.to_dict()["results"]
    assert result["status"] == "skipped"
    assert result["reason"] == "no current data: give --current (production data)"


def test_regression_predictions_and_r2() -> None:
    from sklearn.linear_model import LinearRegression

    train = frame(seed=0)
    train["y"] = 2 * train["a"] + np.random.default_rng(0).normal(0, 0.1, len(train))
    current = frame(seed=5)
    current["y"] = -current["a"]  # the relation the model learnt no longer holds
    model = LinearRegression().fit(train[["a", "b"]], train["y"])
    audit = scan(model, train=train, current=current, target="y", select="MLA704")
    [result] = audit.to_dict()["results"]
    performance = result["metrics"]["performance"]
    assert performance["current"]["metric"] == "r2"
    assert performance["current"]["high"] < 0
    assert result["metrics"]["prediction_drift"]["kind"] == "numeric"
    assert any("r2 dropped" in f["title"] for f in result["findings"])


def test_distribution_charts_escape_the_data_labels() -> None:
    from mlaudit.reports.charts import collect_charts, render_chart

    metrics = {"distributions": {"<b>col</b>": {"distribution": {
        "bins": ["<script>x</script>", "other"], "reference": [0.5, 0.5],
        "current": [0.9, 0.1],
    }}}}
    [chart] = collect_charts(metrics)
    assert chart.title == "Reference and current: <b>col</b>"
    svg = str(render_chart(chart))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert svg.count("<rect") >= 4


def test_identifiers_and_free_text_are_not_compared() -> None:
    train, current = frame(seed=0), frame(seed=5)
    train["customer"] = [f"C{i:05d}" for i in range(len(train))]
    current["customer"] = [f"N{i:05d}" for i in range(len(current))]  # never the same ids
    result = _mla704(train, current)
    assert result["findings"] == []
    assert result["metrics"]["not_compared"] == {
        "customer": "identifiers or free text: too many distinct values"
    }
    quality = scan(forest(train), train=train, current=current, target="y", select="MLA701")
    assert quality.findings == ()
