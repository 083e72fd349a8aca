"""MLA303's attack models trained on a real Dask LocalCluster (two workers): one sensitive
column per worker, and the same result as the local run's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import mlaudit

distributed = pytest.importorskip("distributed")
pytest.importorskip("art")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolated worker is forked")

TARGET = "y"
OPTIONS: dict[str, Any] = {"sensitive": ["secret", "grade"], "bootstrap": 200, "max_rows": 300}


def _frame(rows: int, seed: int) -> pd.DataFrame:
    """The label follows ``secret`` (which the model reveals); ``grade`` is noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "a": rng.normal(size=rows), "grade": rng.integers(0, 3, rows),
        "secret": rng.integers(0, 2, rows),
    })
    frame[TARGET] = (frame["secret"] * 2 - 1 + rng.normal(0, 0.3, rows) > 0).astype(int)
    return frame


def _scan(root: Path, **cluster: Any) -> dict[str, Any]:
    audit = mlaudit.scan(
        str(root / "model.joblib"), train=root / "train.csv", holdout=root / "holdout.csv",
        target=TARGET, select=["MLA303"], rule_options={"MLA303": OPTIONS}, config=None,
        **cluster,
    )
    [result] = audit.report["results"]
    return {k: v for k, v in result.items() if k not in {"duration_s", "queries"}}


def test_the_cluster_attacks_the_columns_as_the_local_run_does(
    tmp_path: Path, cluster: Any
) -> None:
    train, holdout = _frame(300, 1), _frame(100, 2)
    model = LogisticRegression().fit(train.drop(columns=[TARGET]), train[TARGET])
    joblib.dump(model, tmp_path / "model.joblib")
    train.to_csv(tmp_path / "train.csv", index=False)
    holdout.to_csv(tmp_path / "holdout.csv", index=False)
    local = _scan(tmp_path)
    assert local["status"] == "failed"
    assert [f["location"]["pointer"] for f in local["findings"]] == ["secret"]
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        remote = _scan(tmp_path, dask_scheduler=cluster.scheduler_address)
    # The two columns went to the cluster as two tasks, one per worker.
    tasks = [task for task in stream.data if task["key"].startswith("run_remote")]
    assert len(tasks) == 2
    assert remote == local
