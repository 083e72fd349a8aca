"""MLA401's column chunks analysed on a real Dask LocalCluster (two workers): each worker
rebuilds the columns from the data it holds, and the report is the local run's."""

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
from mlaudit.rules import personal_data

distributed = pytest.importorskip("distributed")
pytest.importorskip("presidio_analyzer")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolated worker is forked")

ROWS = 80
PEOPLE = ("Mary Smith", "John Jones", "Ann Lee", "Omar Khan", "Rosa Diaz")


def _frame(offset: int) -> pd.DataFrame:
    rng = np.random.default_rng(offset)
    return pd.DataFrame({
        "email": [f"user{offset + i}@example.com" for i in range(ROWS)],
        "full_name": [PEOPLE[i % len(PEOPLE)] for i in range(ROWS)],
        "notes": [f"ask {PEOPLE[i % 5]}, phone (212) 555-{1000 + offset + i}" if i % 3
                  else "nothing to note" for i in range(ROWS)],
        "x": rng.normal(size=ROWS),
        "y": rng.integers(0, 2, ROWS),
    })


def _scan(root: Path, **cluster: Any) -> dict[str, Any]:
    audit = mlaudit.scan(
        str(root / "model.joblib"), train=root / "train.csv", holdout=root / "holdout.csv",
        target="y", select=["MLA401"], rule_options={"MLA401": {"sample_rows": 60}},
        config=None, **cluster,
    )
    return {
        r["rule_id"]: {k: v for k, v in r.items() if k not in {"duration_s", "queries"}}
        for r in audit.report["results"]
    }


def test_the_cluster_finds_the_personal_data_the_local_run_does(
    tmp_path: Path, cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, holdout = _frame(0), _frame(1000)
    train.to_csv(tmp_path / "train.csv", index=False)
    holdout.to_csv(tmp_path / "holdout.csv", index=False)
    model = LogisticRegression().fit(train[["x"]], train["y"])
    joblib.dump(model, tmp_path / "model.joblib")
    # Chunks of 16 values: each column of 60 sampled rows spreads over several units and
    # rounds (the chunk size travels with the request, so the workers use it too).
    monkeypatch.setattr(personal_data, "CHUNK_VALUES", 16)
    local = _scan(tmp_path)["MLA401"]
    assert local["status"] == "failed"
    assert {f["evidence"]["column"] for f in local["findings"]} == {"email", "full_name", "notes"}
    # Per file: 60 distinct addresses in 4 chunks, 5 names in 1, the notes' values in 3.
    assert local["metrics"]["column_chunks"] == 2 * (4 + 1 + 3)
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        remote = _scan(tmp_path, dask_scheduler=cluster.scheduler_address)["MLA401"]
    tasks = [task for task in stream.data if task["key"].startswith("run_remote")]
    assert len(tasks) >= 4  # rounds of 64 values, two tasks each
    assert remote == local
