"""MLA701: data quality of every data file against the training data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlaudit import scan
from mlaudit.core.errors import ConfigError
from mlaudit.rules.data import DataQuality
from mlaudit.testing import assert_rule_contract
from tests.rules.data_fixtures import forest, frame


def _mla701(**roles: Any) -> dict[str, Any]:
    train = roles.pop("train")
    assert isinstance(train, pd.DataFrame)
    audit = scan(forest(train), train=train, target="y", select="MLA701", **roles)
    [result] = [r for r in audit.to_dict()["results"] if r["rule_id"] == "MLA701"]
    return result


def test_contract() -> None:
    assert_rule_contract(DataQuality)


def test_quiet_on_data_like_the_training_data() -> None:
    result = _mla701(train=frame(seed=0), holdout=frame(seed=1), current=frame(seed=2))
    assert result["status"] == "passed"
    assert [f for f in result["findings"] if f["severity"] != "info"] == []
    assert result["metrics"]["files"]["current"] == {
        "rows": 1500, "columns": 4, "findings": 0, "read": "every row, in memory",
    }
    assert result["metrics"]["pipeline"] == "read from the fitted model"


def test_fires_on_range_categories_types_and_constant_columns() -> None:
    current = frame(seed=2)
    current.loc[:374, "a"] = 25.0  # 25% past the training maximum: high
    current.loc[:149, "colour"] = "purple"  # 10% never seen: medium
    current["size"] = current["size"].astype(object)
    current.loc[:2, "size"] = "unknown"  # text in a number column
    holdout = frame(seed=1)
    holdout["size"] = 7.0  # a feed that went constant
    result = _mla701(train=frame(seed=0), holdout=holdout, current=current)
    findings = {(f["location"]["artifact"], f["title"]): f for f in result["findings"]}
    by_title = {title: f for (_, title), f in findings.items()}
    outside = by_title["Values outside the training range"]
    assert outside["severity"] == "high"
    evidence = outside["evidence"]
    assert 375 <= evidence["rows"] == evidence["below"] + evidence["above"] < 380
    share = evidence["share"]  # graded by its lower bound: 0.2 <= low
    assert 0.2 <= share["low"] < share["estimate"] < share["high"]
    assert share["estimate"] == pytest.approx(evidence["rows"] / 1500, abs=1e-6)
    unseen = by_title["Categories never seen in training"]
    assert unseen["severity"] == "medium"
    assert unseen["evidence"]["categories"] == ["purple"]
    changed = by_title["Column type changed since training"]
    assert changed["evidence"] == {"kind": "categorical", "training_kind": "numeric"}
    mixed = by_title["Numbers and text in one column"]
    assert (mixed["evidence"]["text_values"], mixed["severity"]) == (3, "info")
    constant = by_title["Constant column"]
    assert constant["severity"] == "medium"
    assert constant["location"]["pointer"] == "size"
    assert constant["message"].startswith("holdout: ")
    assert result["status"] == "failed"


def test_missing_values_are_findings_only_where_the_pipeline_does_not_handle_them() -> None:
    current = frame(seed=2)
    current.loc[100:399, "b"] = np.nan  # the forest splits on missing values itself
    train = frame(seed=0)
    assert _mla701(train=train, current=current)["findings"] == []

    # A plain function tells nothing about its pipeline: the same gaps are a finding.
    def model(rows: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(rows), dtype=int)

    audit = scan(model, train=train, current=current, target="y", select="MLA701")
    [missing] = audit.findings
    assert missing.title == "Missing values the pipeline does not handle"
    # 20% of the rows: graded by the lower bound of its interval, medium.
    assert missing.severity.value == "medium"
    assert missing.evidence["rows"] == 300


def test_runs_on_the_data_alone_without_a_model(tmp_path: pytest.TempPathFactory) -> None:
    """MLA701 needs no model: a model the gate blocks leaves the data checks running."""
    import pickle

    from tests.conftest import _Hostile

    hostile = tmp_path / "hostile.pkl"  # type: ignore[operator]
    hostile.write_bytes(pickle.dumps(_Hostile(tmp_path / "CANARY"), protocol=2))  # type: ignore[operator]
    current = frame(seed=2)
    current.loc[:599, "size"] = np.nan
    audit = scan(str(hostile), train=frame(seed=0), current=current, target="y",
                 select="MLA701")
    [result] = audit.to_dict()["results"]
    assert result["metrics"]["pipeline"].startswith("no model loaded")
    [finding] = result["findings"]
    assert finding["evidence"]["rows"] == 600
    assert finding["severity"] == "high"


def test_share_bands_must_increase() -> None:
    train = frame(seed=0)
    with pytest.raises(ConfigError, match="share_bands"):
        scan(forest(train), train=train, target="y", select="MLA701",
             rule_options={"MLA701": {"share_bands": [0.5, 0.1]}})
