"""A real Dask LocalCluster (a scheduler and two worker processes) fits the reference models:
the report is the local run's, and a worker killed mid-scan never hangs the scan."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import pytest

import mlaudit
from tests.privacy.fixtures import TARGET, forest, noisy_frame

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolated worker is forked")

RULES = ("MLA302", "MLA304")
OPTIONS: dict[str, dict[str, Any]] = {
    "MLA302": {"references": 4, "bootstrap": 200},
    "MLA304": {"reference_models": 4},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cluster")
    train, holdout = noisy_frame(300, 1), noisy_frame(300, 2)
    model = forest().fit(train.drop(columns=[TARGET]), train[TARGET])
    joblib.dump(model, root / "model.joblib")
    train.to_csv(root / "train.csv", index=False)
    holdout.to_csv(root / "holdout.csv", index=False)
    return {"model": root / "model.joblib", "train": root / "train.csv",
            "holdout": root / "holdout.csv"}


def _scan(files: dict[str, Path], **cluster: Any) -> dict[str, Any]:
    audit = mlaudit.scan(
        str(files["model"]), train=files["train"], holdout=files["holdout"], target=TARGET,
        select=list(RULES), rule_options=OPTIONS, config=None, **cluster,
    )
    return {
        r["rule_id"]: {k: v for k, v in r.items() if k not in {"duration_s", "queries"}}
        for r in audit.report["results"]
    }


@pytest.fixture(scope="module")
def local(files: dict[str, Path]) -> dict[str, Any]:
    return _scan(files)


def test_the_cluster_run_reports_what_the_local_run_does(
    files: dict[str, Path], cluster: Any, local: dict[str, Any]
) -> None:
    assert local["MLA302"]["status"] == "failed"  # the forest memorises its noisy labels
    assert local["MLA302"]["metrics"]["references"] == 4
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        remote = _scan(files, dask_scheduler=cluster.scheduler_address)
    # The four references were fitted by the cluster's two workers, one to a task (and
    # shared by MLA304).
    fits = [task for task in stream.data if task["key"].startswith("run_remote")]
    assert len(fits) == 4
    assert remote == local


def test_a_worker_killed_mid_scan_is_retried_or_reported_never_a_hang(
    files: dict[str, Path], cluster: Any, local: dict[str, Any]
) -> None:
    with distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed: list[int] = []

        def kill_once_busy() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if busy:
                    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_once_busy, daemon=True)
        killer.start()
        started = time.monotonic()
        results = _scan(files, dask_scheduler=cluster.scheduler_address)
        killer.join()
    assert time.monotonic() - started < 120
    assert killed, "no task reached the cluster"
    assert killed[0] in pids
    # Retried (the same numbers as the local run), or an error that says why.
    for rule in RULES:
        assert results[rule] == local[rule] or results[rule]["status"] == "error"


@pytest.mark.parametrize(
    "params", [{}, {"indices": "0-10"}, {"indices": [0, "1"]}, {"indices": [True]}]
)
def test_a_malformed_request_from_the_model_worker_is_refused(params: dict[str, Any]) -> None:
    """The model worker asks the parent for cluster work; a hostile model may forge the
    request. It is refused before any task is submitted."""
    from mlaudit.distributed.cluster import requested_units

    with pytest.raises(ValueError, match="indices must be a list of unit numbers"):
        requested_units("reference-scores", dict(params))


def test_a_request_is_split_into_contiguous_tasks_each_with_only_its_own_units() -> None:
    from mlaudit.core.delegation import PER_UNIT
    from mlaudit.distributed.cluster import split_request

    params: dict[str, Any] = {
        "indices": [3, 4, 5, 6, 7], "seed": 1,
        PER_UNIT: {str(u): f"payload {u}" for u in range(3, 8)},
    }
    parts = split_request("work", params, threads=2)
    assert [p["indices"] for p in parts] == [[3, 4], [5, 6, 7]]
    assert [p[PER_UNIT] for p in parts] == [
        {"3": "payload 3", "4": "payload 4"},
        {"5": "payload 5", "6": "payload 6", "7": "payload 7"},
    ]
    assert all(p["seed"] == 1 for p in parts)
    # More threads than units: one unit per task, no empty task.
    assert [p["indices"] for p in split_request("work", {"indices": [0, 1]}, 8)] == [[0], [1]]
    with pytest.raises(ValueError, match="must map units"):
        split_request("work", {"indices": [0], PER_UNIT: ["not", "a", "map"]}, 2)


def test_a_model_given_in_memory_is_refused_a_cluster(
    files: dict[str, Path], cluster: Any
) -> None:
    """The cluster's workers load the audited file's bytes; an object has none, so asking
    for a cluster is a usage error, not a run that silently stays local."""
    from mlaudit.core.errors import UsageError

    model = joblib.load(files["model"])  # written by this test module
    with pytest.raises(UsageError, match="in memory cannot go to a cluster"):
        mlaudit.scan(model, train=files["train"], holdout=files["holdout"], target=TARGET,
                     select=list(RULES), config=None, dask_scheduler=cluster.scheduler_address)


def _sessions_here() -> int:
    from mlaudit.distributed import session

    return len(session._SESSIONS)


def test_the_run_s_model_sessions_end_with_the_run(
    files: dict[str, Path], cluster: Any
) -> None:
    """Every worker started a session for the run (its model loaded); none outlives it."""
    _scan(files, dask_scheduler=cluster.scheduler_address)
    with distributed.Client(cluster) as client:
        assert set(client.run(_sessions_here).values()) == {0}
