"""MLA303's work units: each attacked column has its own random stream, so its result does not
depend on which other columns are attacked, and the cluster's computation returns, for the
columns it is given, exactly what the rule reports for them."""

from __future__ import annotations

import json
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlaudit.core.findings import JsonValue, RuleResult
from mlaudit.core.stats import Interval
from mlaudit.engine.run import EngineSettings, run_audit
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.privacy.attribute import (
    AttributeRequest,
    AttributeResult,
    attack_requested_columns,
)
from mlaudit.rules.privacy import AttributeInference
from mlaudit.subject.build import Subject
from tests.privacy.fixtures import TARGET, write_subject

pytest.importorskip("art")

# Few resamples: these tests compare results, they do not gate on them.
OPTIONS: dict[str, JsonValue] = {"bootstrap": 200, "max_rows": 400}


def _frame(rows: int, seed: int) -> pd.DataFrame:
    """The label follows ``secret``; ``grade`` is categorical noise, ``b`` continuous noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "a": rng.normal(size=rows), "b": rng.normal(size=rows),
        "grade": rng.integers(0, 3, rows), "secret": rng.integers(0, 2, rows),
    })
    frame[TARGET] = (frame["secret"] * 2 - 1 + rng.normal(0, 0.3, rows) > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> Subject:
    return write_subject(
        tmp_path_factory.mktemp("attribute"), LogisticRegression(), _frame(500, 1),
        _frame(200, 2),
    )


def _mla303(subject: Subject, sensitive: list[str], progress: list[str]) -> RuleResult:
    options: dict[str, JsonValue] = {**OPTIONS, "sensitive": list[JsonValue](sensitive)}
    settings = EngineSettings(seed=3, profile="quick", rule_options={"MLA303": options})
    [result] = run_audit(subject, [AttributeInference], settings, progress.append).results
    return result


@pytest.fixture(scope="module")
def together(subject: Subject) -> tuple[RuleResult, list[str]]:
    """Three columns attacked in one run, and the run's progress."""
    progress: list[str] = []
    return _mla303(subject, ["grade", "b", "secret"], progress), progress


def _columns(result: RuleResult) -> dict[str, Any]:
    columns = result.metrics["columns"]
    assert isinstance(columns, list)
    return {str(c["column"]): c for c in columns if isinstance(c, dict)}


def test_a_columns_result_does_not_depend_on_the_other_columns_attacked(
    subject: Subject, together: tuple[RuleResult, list[str]]
) -> None:
    three, progress = together
    alone = _mla303(subject, ["secret"], [])
    assert _columns(alone)["secret"] == _columns(three)["secret"]
    assert alone.findings == three.findings  # only secret fires, with the same evidence
    assert [f.location.pointer for f in three.findings] == ["secret"]
    # One counter step per column, each with an ETA.
    trained = [m for m in progress if "attack models trained" in m]
    assert [m.split(",")[0] for m in trained] == [
        f"MLA303 attack models trained {i}/3" for i in (1, 2, 3)
    ]
    assert all(", ETA " in m for m in trained)


def test_the_cluster_computation_returns_the_rules_results(
    subject: Subject, together: tuple[RuleResult, list[str]]
) -> None:
    """What a cluster task computes for columns 2 and 0 of a request, from plain parameters
    (through JSON and back), is what the rule reports for them."""
    reported = _columns(together[0])
    assert subject.model.path is not None
    model = wrap_estimator(joblib.load(subject.model.path), "scikit-learn", "test")
    max_rows, resamples = OPTIONS["max_rows"], OPTIONS["bootstrap"]
    assert isinstance(max_rows, int)
    assert isinstance(resamples, int)
    request = AttributeRequest(3, max_rows, ("grade", "b", "secret"), 20, resamples, 0.95)
    computed = attack_requested_columns(model, subject, request.params([2, 0]))
    answer = json.loads(json.dumps(computed))
    assert isinstance(answer, list)
    results = [AttributeResult.from_json(value) for value in answer]
    assert [r.column for r in results] == ["secret", "grade"]
    for result in results:
        assert result.as_metric() == reported[result.column]


@pytest.mark.parametrize(
    "value", [None, [], {"column": "x"}, {"column": "x", "continuous": True, "rows": 3,
                                          "attack": 0.5, "baseline": "0.1",
                                          "advantage": [0, 0, 0, 0.95]}],
)
def test_a_malformed_result_from_a_worker_is_refused(value: JsonValue) -> None:
    with pytest.raises(ValueError, match="attribute result"):
        AttributeResult.from_json(value)


def test_a_result_crosses_json_exactly() -> None:
    result = AttributeResult("x", False, 10, 0.1 + 0.2, 1 / 3, Interval(0.1, -0.05, 0.3, 0.9))
    assert AttributeResult.from_json(json.loads(json.dumps(result.as_json()))) == result
