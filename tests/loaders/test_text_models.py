"""Models whose input is text: fed the column they read, scanned end to end through the CLI."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

from mlaudit.core.errors import InputError
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.subject.model_info import InputKind
from tests.conftest import Runner
from tests.text_models import LABEL, TEXT, reviews, write_case

# Every family whose rules apply to a text classifier (MLA7xx data quality is tabular).
APPLICABLE = ("MLA1", "MLA2", "MLA3", "MLA4", "MLA702")


def _selected(*prefixes: str) -> list[str]:
    return [part for prefix in prefixes for part in ("--select", prefix)]


def test_inputs_follow_what_the_model_takes() -> None:
    data = reviews(40, cues=2, seed=0)
    text = Pipeline([("tfidf", TfidfVectorizer()), ("lr", LogisticRegression())])
    model = wrap_estimator(text.fit(data[TEXT], data[LABEL]), "scikit-learn", "m",
                           text_column=TEXT)
    assert (model.input_kind, model.feature_names, model.n_features) == (
        InputKind.TEXT, (TEXT,), None
    )
    assert model.estimator_input is not None
    given = model.estimator_input(pd.DataFrame({TEXT: ["a b", None]}))
    assert isinstance(given, np.ndarray)
    assert given.tolist() == ["a b", ""]  # 1-D texts; a missing text is the empty one
    assert model.predict(data[[TEXT]]).shape == (40,)
    # Left to the engine to name from the data when the option is not given.
    assert wrap_estimator(text, "scikit-learn", "m").feature_names is None

    union = Pipeline([
        ("features", FeatureUnion([("words", TfidfVectorizer()),
                                   ("chars", TfidfVectorizer(analyzer="char_wb"))])),
        ("lr", LogisticRegression()),
    ]).fit(data[TEXT], data[LABEL])
    assert wrap_estimator(union, "scikit-learn", "m").input_kind is InputKind.TEXT

    rng = np.random.default_rng(0)
    numbers = rng.normal(size=(40, 2))
    columns = Pipeline([("columns", ColumnTransformer([("scale", StandardScaler(), [0, 1])])),
                        ("lr", LogisticRegression())]).fit(numbers, data[LABEL])
    by_name = wrap_estimator(columns, "scikit-learn", "m").estimator_input
    assert by_name is not None
    assert isinstance(by_name(pd.DataFrame(numbers, columns=["a", "b"])), pd.DataFrame)
    plain = wrap_estimator(LogisticRegression().fit(numbers, data[LABEL]), "scikit-learn", "m")
    assert plain.input_kind is InputKind.TABULAR
    assert plain.estimator_input is not None
    assert isinstance(plain.estimator_input(pd.DataFrame(numbers)), np.ndarray)

    reads_files = Pipeline([("tfidf", TfidfVectorizer(input="filename")),
                            ("lr", LogisticRegression())])
    with pytest.raises(InputError, match="input='filename'"):
        wrap_estimator(reads_files, "scikit-learn", "m")


@pytest.mark.parametrize("kind", ["svc", "logreg"])
def test_text_pipelines_through_the_cli(run_cli: Runner, tmp_path: Path, kind: str) -> None:
    model, train, holdout = write_case(tmp_path / "good", kind=kind, cues=4)
    scan = ["scan", model, "--train", train, "--holdout", holdout, "--target", LABEL]
    # The personal-data rules load a language model: once is enough for the test's time.
    families = APPLICABLE if kind == "logreg" else ("MLA2", "MLA3", "MLA702")
    good = run_cli(*scan, *_selected(*families), "--fail-on", "medium")
    assert good.exit_code == 0, good.stderr
    statuses = {r["rule_id"]: (r["status"], r["reason"]) for r in good.report["results"]}
    assert not [rule for rule, (status, _) in statuses.items() if status == "error"]
    assert statuses["MLA205"][0] == "passed"
    assert statuses["MLA201"] == ("skipped", "text input: MLA205 attacks text")
    for rule in ("MLA301", "MLA304", "MLA702", *(("MLA401", "MLA403") if kind == "logreg" else ())):
        assert statuses[rule][0] in {"passed", "failed"}, (rule, statuses[rule])
    # Reference models are refitted on the text column (LinearSVC has no probabilities).
    assert statuses["MLA302"][0] == ("passed" if kind == "logreg" else "skipped")

    model, train, holdout = write_case(tmp_path / "bad", kind=kind, cues=1)
    bad = run_cli("scan", model, "--train", train, "--holdout", holdout, "--target", LABEL,
                  "--select", "MLA205", "--fail-on", "medium")
    assert bad.exit_code == 1
    assert bad.result("MLA205")["status"] == "failed"
    assert "MLA205 medium: Decisions flip under a few changed words" in bad.stderr


def test_a_model_that_raises_on_the_data_still_gets_a_report(
    run_cli: Runner, tmp_path: Path
) -> None:
    model, train, holdout = write_case(tmp_path, kind="svc", cues=2)
    for path in (train, holdout):
        frame = pd.read_csv(path)
        frame["words"] = frame[TEXT].str.split().str.len()
        frame.to_csv(path, index=False)
    scan = ["scan", model, "--train", train, "--holdout", holdout, "--target", LABEL]
    result = run_cli(*scan, "--text-column", "words", *_selected("MLA1", "MLA205", "MLA301"))
    assert result.exit_code == 1  # the audit is incomplete: the gate fails closed
    assert result.result("MLA101")["status"] == "passed"  # the file's results are kept
    expected = (
        f"the model cannot predict on train file {train}: Pipeline step 'tfidf' "
        "(TfidfVectorizer) failed on the data: AttributeError: 'int' object has no attribute "
        "'lower'; check that --text-column names the column of raw text the model was "
        "trained on"
    )
    for rule in ("MLA205", "MLA301"):
        assert (result.result(rule)["status"], result.result(rule)["reason"]) == (
            "error", expected
        )
    assert "gate FAILED: MLA205 errored; MLA301 errored" in result.stderr
    # Without the option the one text column is found, and the scan completes.
    assert run_cli(*scan, *_selected("MLA205")).exit_code == 0


def test_the_text_column_must_be_known(run_cli: Runner, tmp_path: Path) -> None:
    model, _, holdout = write_case(tmp_path, kind="svc", cues=2)
    frame = pd.read_csv(holdout)
    frame["title"] = "a title"
    frame.to_csv(holdout, index=False)
    result = run_cli("scan", model, "--data", holdout, "--target", LABEL, "--select", "MLA205")
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(
        "the model takes text and the data has 2 text columns (review, title): name the "
        "column that holds it with --text-column (text_column in the configuration)"
    )
    missing = run_cli("scan", model, "--data", holdout, "--target", LABEL, "--select", "MLA205",
                      "--text-column", "body")
    assert missing.exit_code == 2
    assert "lacks 1 column(s) the model needs: body; name the column that holds the text with " \
        "--text-column" in missing.stderr


def test_onnx_text_model(run_cli: Runner, tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType

    model, _, holdout = write_case(tmp_path, kind="logreg", cues=1)
    fitted = joblib.load(model)
    options = {id(fitted.steps[0][1]): {"locale": "C"}, id(fitted.steps[-1][1]): {"zipmap": False}}
    converted = to_onnx(fitted, initial_types=[("input", StringTensorType([None, 1]))],
                        options=options)
    onnx_path = tmp_path / "text.onnx"
    onnx_path.write_bytes(converted.SerializeToString())
    result = run_cli("scan", onnx_path, "--data", holdout, "--target", LABEL,
                     "--select", "MLA205", "--text-column", TEXT)
    assert result.exit_code == 0, result.stderr
    mla205 = result.result("MLA205")
    assert mla205["status"] == "failed"
    assert mla205["metrics"]["text_column"] == TEXT
