"""MLA501 and MLA502's bandit batches scanned on a real Dask LocalCluster (two workers): the
files travel as text, and the results are the local run's, paths and order included."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

import mlaudit
from mlaudit.code import bandit_run
from tests.rules.test_code import UNSAFE

distributed = pytest.importorskip("distributed")
pytest.importorskip("bandit")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolated worker is forked")

RULES = ("MLA501", "MLA502")


def _scan(root: Path, **cluster: Any) -> dict[str, Any]:
    audit = mlaudit.scan(
        str(root / "model.joblib"), source=root / "src", select=list(RULES), config=None,
        **cluster,
    )
    return {
        r["rule_id"]: {k: v for k, v in r.items() if k not in {"duration_s", "queries"}}
        for r in audit.report["results"]
    }


def test_the_cluster_scans_the_code_as_the_local_run_does(
    tmp_path: Path, cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), tmp_path / "model.joblib")
    tree = {**UNSAFE, "pkg/util.py": UNSAFE["serve.py"], "pkg/broken.py": "x = (\n"}
    for name, text in tree.items():
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_text(text)
    # Bytes that are not UTF-8 travel as they are (a latin-1 comment, Windows line ends).
    (tmp_path / "src" / "legacy.py").write_bytes(
        b"# -*- coding: latin-1 -*-\n# caf\xe9\r\nimport pickle\r\nx = pickle.loads(b'')\r\n"
    )
    # One file a batch: the five batches go to the two workers in three rounds.
    monkeypatch.setattr(bandit_run, "BATCH_FILES", 1)
    local = _scan(tmp_path)
    assert local["MLA501"]["status"] == local["MLA502"]["status"] == "failed"
    assert local["MLA502"]["metrics"]["files"] == 5
    assert local["MLA501"]["metrics"]["skipped_files_count"] == 1  # pkg/broken.py
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        remote = _scan(tmp_path, dask_scheduler=cluster.scheduler_address)
    tasks = [task for task in stream.data if task["key"].startswith("run_remote")]
    assert len(tasks) == 5  # one run of bandit, shared by the two rules
    assert remote == local
    artifacts = {f["location"]["artifact"] for f in remote["MLA502"]["findings"]}
    fired = ("train.py", "serve.py", "pkg/util.py", "legacy.py")
    assert artifacts == {str(tmp_path / "src" / name) for name in fired}
