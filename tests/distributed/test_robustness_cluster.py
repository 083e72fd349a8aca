"""MLA201 attacks and MLA203 certifies their rows' chunks on a real Dask LocalCluster: the
report is the local run's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import mlaudit
from tests.robustness.models import separated

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolated worker is forked")

# 60 rows: one chunk of attack (shared by both rules), three of certification, so the two
# workers each take some.
RULES = ["MLA201", "MLA203"]
OPTIONS: dict[str, dict[str, Any]] = {
    "MLA201": {"samples": 60, "queries": 300, "norms": ["linf"]},
    "MLA203": {"samples": 60, "queries": 300},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("robustness-cluster")
    frame, labels = separated(rows=200, gap=0.0, seed=3)
    labels = np.where(np.random.default_rng(4).random(len(labels)) < 0.1, 1 - labels, labels)
    model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)
    joblib.dump(model.fit(frame, labels), root / "forest.joblib")
    frame.assign(label=labels).to_csv(root / "data.csv", index=False)
    return {"model": root / "forest.joblib", "data": root / "data.csv"}


def _scan(files: dict[str, Path], **cluster: Any) -> dict[str, Any]:
    audit = mlaudit.scan(
        str(files["model"]), data=files["data"], target="label", select=RULES,
        rule_options=OPTIONS, profile="quick", config=None, **cluster,
    )
    return {
        r["rule_id"]: {k: v for k, v in r.items() if k not in {"duration_s", "queries"}}
        for r in audit.report["results"]
    }


def test_attack_and_certification_on_the_cluster_reports_what_the_local_run_does(
    files: dict[str, Path], cluster: Any
) -> None:
    local = _scan(files)
    assert local["MLA201"]["metrics"]["norms"]["linf"]["perturbation"]["found"] > 0
    assert local["MLA203"]["metrics"]["reused"] == {"evasion-attack": "MLA201"}
    verification = local["MLA203"]
    assert verification["status"] in {"passed", "failed"}
    assert verification["metrics"]["certified_radius"]["found"] > 0
    assert "scaled_down" not in verification["metrics"]
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        remote = _scan(files, dask_scheduler=cluster.scheduler_address)
    # The attack's wave and the certification's each reached the cluster.
    assert len([t for t in stream.data if t["key"].startswith("run_remote")]) >= 2
    assert remote == local
