"""XGBoost, LightGBM and CatBoost files through the whole CLI: scanned, loaded, audited.

The scans run in one fresh process (see tests/fixtures/tree_models.py for why).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest

from mlaudit.core.errors import InputError
from mlaudit.subject.model_info import LoadedModel, Task
from tests.fixtures.tree_models import TARGET, build_tree_models, run_scans

SCHEMA = Path(__file__).resolve().parents[2] / "reports" / "report.schema.json"
_DATA = ["--holdout", "holdout.csv", "--train", "train.csv", "--target", TARGET]
_AUDIT = ["--select", "MLA1", "--select", "MLA203", "--select", "MLA702"]
JOBS: dict[str, list[str]] = {
    "xgboost-json": ["model.json", *_DATA, *_AUDIT],
    "xgboost-ubj": ["model.ubj", *_DATA, "--select", "MLA1", "--select", "MLA702"],
    # Fitted on breast-cancer columns with spaces: LightGBM calls "mean radius" mean_radius.
    "lightgbm": ["model.txt", *_DATA, *_AUDIT, "--select", "MLA302"],
    "catboost": ["model.cbm", *_DATA, *_AUDIT, "--select", "MLA302"],
    "regressor": ["regressor.ubj", "--data", "holdout.csv", "--select", "MLA702"],
    "xgboost-pickle": ["xgb.joblib", *_DATA, "--select", "MLA1", "--select", "MLA702"],
    "lightgbm-pickle": ["lgbm.joblib", *_DATA, "--select", "MLA1", "--select", "MLA702"],
    "truncated": ["truncated.json", *_DATA, "--select", "MLA1", "--select", "MLA702"],
    "ambiguous": ["model.txt", "--data", "ambiguous.csv", "--select", "MLA702"],
    "memorised": ["memorised.json", "--train", "noisy.csv", "--holdout", "holdout.csv",
                  "--target", TARGET, "--select", "MLA301"],
}


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, dict[str, Any]]]:
    root = build_tree_models(tmp_path_factory.mktemp("tree-scans"))
    model = (root / "model.json").read_bytes()
    (root / "truncated.json").write_bytes(model[: len(model) // 2])
    jobs = {
        name: ["scan", *arguments, "--profile", "quick", "-o", f"out-{name}"]
        for name, arguments in JOBS.items()
    }
    holdout = pd.read_csv(root / "holdout.csv")
    holdout["mean:radius"] = holdout["mean radius"]  # LightGBM would spell both mean_radius
    holdout.to_csv(root / "ambiguous.csv", index=False)
    codes, errors = run_scans(jobs, root)
    reports: dict[str, tuple[int, dict[str, Any]]] = {}
    for name, code in codes.items():
        report = root / f"out-{name}" / "report.json"
        if code == 2:  # an input error: one line on stderr, no report
            reports[name] = (code, {"stderr": errors})
            continue
        assert report.exists(), f"{name} exited {code} without a report: {errors[-2000:]}"
        reports[name] = (code, json.loads(report.read_text()))
    return reports


def _results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["rule_id"]: r for r in report["results"]}


@pytest.mark.parametrize(
    ("name", "framework", "model_format"),
    [
        ("xgboost-json", "xgboost", "xgboost-json"),
        ("xgboost-ubj", "xgboost", "xgboost-ubj"),
        ("lightgbm", "lightgbm", "lightgbm-text"),
        ("catboost", "catboost", "catboost"),
    ],
)
def test_native_files_are_loaded_and_audited(
    scans: dict[str, tuple[int, dict[str, Any]]], name: str, framework: str, model_format: str
) -> None:
    code, report = scans[name]
    assert code == 0
    model = report["subject"]["model"]
    assert (model["format"], model["framework"], model["task"]) == (
        model_format, framework, "classification"
    )
    assert model["load"]["status"] == "allowed"
    assert model["classes"] == [0, 1]
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(report)
    results = _results(report)
    assert results["MLA105"]["findings"] == []  # already the library's safe format
    assert results["MLA702"]["status"] == "passed"
    # Every selected rule ran; MLA402 reads only pickle and ONNX files for personal data,
    # MLA302 fits no reference CatBoost models (see mlaudit/loaders/catboost.py).
    assert all(r["status"] in ("passed", "failed") for r in results.values()
               if r["rule_id"] not in ("MLA402", "MLA302"))


@pytest.mark.parametrize("name", ["xgboost-json", "lightgbm", "catboost"])
def test_tree_verification_reads_the_native_booster(
    scans: dict[str, tuple[int, dict[str, Any]]], name: str
) -> None:
    result = _results(scans[name][1])["MLA203"]
    assert result["status"] == "passed"
    assert result["metrics"]["trees"] == 20
    assert result["metrics"]["survival_at_epsilon"]["certified"]["estimate"] > 0


_CATBOOST_SOUNDNESS = r"""
import numpy as np, pandas as pd, catboost
from sklearn.datasets import load_breast_cancer
from mlaudit.robustness.space import FeatureSpace
from mlaudit.robustness.trees import Verifier, leaf_table
x, y = load_breast_cancer(return_X_y=True, as_frame=True)
x, y = x.iloc[:300, :6], y.iloc[:300]
model = catboost.CatBoostClassifier(iterations=20, depth=4, verbose=0, thread_count=1,
                                    allow_writing_files=False).fit(x, y)
probe = x.iloc[200:230].reset_index(drop=True)
table = leaf_table(model, probe)
space = FeatureSpace.from_data([x])
verifier = Verifier(table, space, "linf")
clean = model.predict(probe)
rng = np.random.default_rng(0)
certified = flips = 0
for i, row in enumerate(probe.to_numpy(float)):
    radius = verifier.radius(row, list(table.classes).index(clean[i]))
    if not 0 < radius < np.inf:
        continue
    certified += 1
    moved = row + rng.uniform(-1, 1, (300, 6)) * radius * 0.999 * space.scale
    flips += int((model.predict(pd.DataFrame(moved, columns=x.columns)) != clean[i]).sum())
assert certified > 0 and flips == 0, (certified, flips)
"""


def test_catboost_certified_radius_is_below_every_sampled_flip(tmp_path: Path) -> None:
    """CatBoost's oblivious trees, read as boxes, certify nothing a perturbation can undo
    (in a fresh process: CatBoost's threads, like OpenMP, must not run in this one)."""
    subprocess.run([sys.executable, "-c", _CATBOOST_SOUNDNESS], check=True, timeout=120,
                   cwd=tmp_path, capture_output=True)


def test_reference_models_refit_from_the_file_parameters(
    scans: dict[str, tuple[int, dict[str, Any]]],
) -> None:
    result = _results(scans["lightgbm"][1])["MLA302"]
    assert result["status"] in ("passed", "failed"), result


def test_catboost_reference_models_are_skipped_with_the_reason(
    scans: dict[str, tuple[int, dict[str, Any]]],
) -> None:
    result = _results(scans["catboost"][1])["MLA302"]
    assert result["status"] == "skipped"
    assert "CatBoostClassifier" in json.dumps(result)


def test_lightgbm_names_match_the_data_columns_with_spaces(
    scans: dict[str, tuple[int, dict[str, Any]]],
) -> None:
    code, report = scans["lightgbm"]
    assert code == 0
    assert "mean_radius" in report["subject"]["model"]["feature_names"]


def test_regressor_objective_gives_the_task(
    scans: dict[str, tuple[int, dict[str, Any]]],
) -> None:
    code, report = scans["regressor"]
    assert code == 0
    assert report["subject"]["model"]["task"] == "regression"


@pytest.mark.parametrize(
    ("name", "framework", "advice"),
    [("xgboost-pickle", "xgboost", "model.json"), ("lightgbm-pickle", "lightgbm", "model.txt")],
)
def test_pickled_boosters_are_named_and_pointed_to_their_own_format(
    scans: dict[str, tuple[int, dict[str, Any]]], name: str, framework: str, advice: str
) -> None:
    code, report = scans[name]
    assert code == 0
    assert report["subject"]["model"]["framework"] == framework
    [finding] = _results(report)["MLA105"]["findings"]
    assert advice in finding["message"]
    assert "skops" not in finding["message"]


def test_truncated_file_is_malformed_and_not_loaded(
    scans: dict[str, tuple[int, dict[str, Any]]],
) -> None:
    code, report = scans["truncated"]
    assert code == 1
    results = _results(report)
    assert results["MLA107"]["status"] == "failed"
    assert report["subject"]["model"]["load"]["status"] == "blocked"
    assert results["MLA702"]["status"] == "skipped"


def test_memorised_booster_fails_membership_inference(
    scans: dict[str, tuple[int, dict[str, Any]]],
) -> None:
    code, report = scans["memorised"]
    assert code == 1
    result = _results(report)["MLA301"]
    assert result["status"] == "failed"
    assert {f["severity"] for f in result["findings"]} >= {"high"}


def test_ambiguous_spelling_is_an_input_error(
    scans: dict[str, tuple[int, dict[str, Any]]],
) -> None:
    code, report = scans["ambiguous"]
    assert code == 2
    assert "'mean radius', 'mean:radius'" in report["stderr"]


def _named_model(*names: str) -> LoadedModel:
    return LoadedModel("lightgbm", Task.REGRESSION, None, lambda frame: frame.iloc[:, 0],
                       feature_names=names)


def test_lightgbm_spelling_selects_and_renames_the_data_columns() -> None:
    model = _named_model("mean_radius", "b")
    frame = pd.DataFrame({"b": [1.0, 2.0], "mean radius": [3.0, 4.0], "other": [0, 0]})
    # The rules see the data's own names; the model gets its own.
    assert list(model.select_features(frame).columns) == ["mean radius", "b"]
    assert model.predict(frame).tolist() == [3.0, 4.0]


def test_exact_names_win_over_the_spelling() -> None:
    model = _named_model("a_b")
    frame = pd.DataFrame({"a b": [1.0], "a_b": [2.0]})
    assert model.predict(frame).tolist() == [2.0]


def test_two_columns_with_one_spelling_are_refused() -> None:
    model = _named_model("a_b")
    with pytest.raises(InputError, match="'a b', 'a:b'"):
        model.select_features(pd.DataFrame({"a b": [1.0], "a:b": [2.0]}))


def test_framework_is_the_final_steps_library() -> None:
    import xgboost
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlaudit.loaders.sklearn import framework_of

    # Unfitted: nothing here runs XGBoost's OpenMP code.
    pipeline = make_pipeline(StandardScaler(), xgboost.XGBClassifier())
    assert framework_of(pipeline, "scikit-learn") == "xgboost"
    assert framework_of(StandardScaler(), "scikit-learn") == "scikit-learn"
