"""A Dask worker's model session: the model is loaded once, through the gate, in an isolated
worker that serves every request of the run; a request past its time kills that worker."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mlaudit.core.errors import InputError
from mlaudit.core.findings import JsonValue
from mlaudit.core.hashing import sha256_file
from mlaudit.core.load_options import NO_LOAD_OPTIONS
from mlaudit.distributed.session import (
    ModelComputation,
    ModelSession,
    RemoteLoad,
    SessionEnded,
    close_session,
    session_for,
)
from mlaudit.subject.build import Subject, open_model
from mlaudit.subject.model_info import LoadedModel
from tests.conftest import Workspace

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolated worker is forked")


def _pid(model: LoadedModel, subject: Subject, params: Mapping[str, JsonValue]) -> JsonValue:
    return [os.getpid(), type(model.estimator).__name__]


def _sleep(model: LoadedModel, subject: Subject, params: Mapping[str, JsonValue]) -> JsonValue:
    time.sleep(60)
    return []


def _fail(model: LoadedModel, subject: Subject, params: Mapping[str, JsonValue]) -> JsonValue:
    raise ValueError("no such rows")


def _gc_hooks(model: LoadedModel, subject: Subject, params: Mapping[str, JsonValue]) -> JsonValue:
    import gc

    return [len(gc.callbacks)]


COMPUTATIONS: dict[str, ModelComputation] = {
    "pid": _pid, "sleep": _sleep, "fail": _fail, "gc-hooks": _gc_hooks,
}


def _load(path: Path, isolation: str = "default", run: str = "run-1") -> RemoteLoad:
    return RemoteLoad(run, path.name, sha256_file(path), (), False, frozenset(),
                      NO_LOAD_OPTIONS, isolation)


def _subject(path: Path) -> Subject:
    return Subject(open_model(str(path)), (), None, None, ())


@pytest.fixture
def session(workspace: Workspace) -> Iterator[ModelSession]:
    path = workspace.rf_joblib
    started = ModelSession(_load(path), path.read_bytes(), _subject(path), COMPUTATIONS, 60.0)
    yield started
    started.close()


def test_one_isolated_worker_loads_the_model_once_and_serves_every_request(
    session: ModelSession,
) -> None:
    first, second = session.compute("pid", {}, 60.0), session.compute("pid", {}, 60.0)
    assert first == second  # the same worker, the model loaded once
    assert isinstance(first, list)
    assert first[0] != os.getpid()
    assert first[1] == "RandomForestClassifier"


def test_the_parent_s_garbage_collector_hooks_stay_behind(workspace: Workspace) -> None:
    """Regression: a Dask worker's GC hook reads its memory through /proc, which the sandbox
    denies; inherited by the forked worker it printed an exception at every collection and
    slowed every reference fit."""
    import gc

    def parent_hook(_phase: str, _info: dict[str, int]) -> None:
        pass

    gc.callbacks.append(parent_hook)
    try:
        path = workspace.rf_joblib
        session = ModelSession(_load(path), path.read_bytes(), _subject(path), COMPUTATIONS,
                               60.0)
        try:
            assert session.compute("gc-hooks", {}, 60.0) == [0]
        finally:
            session.close()
    finally:
        gc.callbacks.remove(parent_hook)


def test_a_failing_request_is_the_task_s_error_and_the_session_goes_on(
    session: ModelSession,
) -> None:
    with pytest.raises(RuntimeError, match="ValueError: no such rows"):
        session.compute("fail", {}, 60.0)
    with pytest.raises(RuntimeError, match="KeyError"):
        session.compute("not-a-computation", {}, 60.0)
    assert session.compute("pid", {}, 60.0)


def test_a_request_past_its_time_kills_the_worker_and_ends_the_session(
    session: ModelSession,
) -> None:
    pid = session.compute("pid", {}, 60.0)
    assert isinstance(pid, list)
    assert isinstance(pid[0], int)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="within 1 s"):
        session.compute("sleep", {}, 1.0)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while _alive(pid[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid[0])
    with pytest.raises(SessionEnded):
        session.compute("pid", {}, 60.0)


def test_a_closed_session_is_replaced_on_the_next_request(workspace: Workspace) -> None:
    path = workspace.rf_joblib
    load = _load(path, run="run-replaced")
    first = session_for(load, path.read_bytes(), _subject(path), COMPUTATIONS, 60.0)
    assert session_for(load, path.read_bytes(), _subject(path), COMPUTATIONS, 60.0) is first
    assert close_session(load.run)
    assert not close_session(load.run)
    with pytest.raises(SessionEnded):
        first.compute("pid", {}, 60.0)
    again = session_for(load, path.read_bytes(), _subject(path), COMPUTATIONS, 60.0)
    assert again is not first
    assert again.compute("pid", {}, 60.0)
    close_session(load.run)


def test_isolation_none_computes_in_the_dask_worker_itself(workspace: Workspace) -> None:
    path = workspace.rf_joblib
    session = ModelSession(_load(path, "none"), path.read_bytes(), _subject(path),
                           COMPUTATIONS, 60.0)
    try:
        assert session.compute("pid", {}, 60.0) == [os.getpid(), "RandomForestClassifier"]
    finally:
        session.close()


def test_bytes_that_are_not_the_audited_file_are_refused(workspace: Workspace) -> None:
    path = workspace.rf_joblib
    with pytest.raises(InputError, match="not the audited file"):
        ModelSession(_load(path), path.read_bytes() + b"\0", _subject(path), COMPUTATIONS, 60.0)


def test_the_gate_refuses_a_hostile_model_on_the_worker(workspace: Workspace) -> None:
    path = workspace.hostile
    with pytest.raises(InputError, match="load gate refused"):
        ModelSession(_load(path), path.read_bytes(), _subject(path), COMPUTATIONS, 60.0)
    assert not workspace.canary.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _predict(model: LoadedModel, subject: Subject, params: Mapping[str, JsonValue]) -> JsonValue:
    import numpy as np

    estimator: Any = model.estimator
    return [int(v) for v in estimator.predict(np.zeros((3, 4)))]


def _session_on_this_worker(path: str) -> JsonValue:
    model = Path(path)
    session = ModelSession(_load(model), model.read_bytes(), _subject(model),
                           {"predict": _predict}, 60.0)
    try:
        return session.compute("predict", {}, 60.0)
    finally:
        session.close()


def test_a_dask_worker_s_session_runs_a_model_that_predicts_on_threads(
    cluster: Any, tmp_path: Path
) -> None:
    """Regression: Dask workers are spawned, so their multiprocessing start method is not
    fork; the isolated worker forked from one crashed with 'Bad file descriptor' on the
    first predict of a forest with n_jobs=2 (joblib's thread pool registered its lock with
    the Dask worker's resource tracker, whose pipe the isolated worker had closed)."""
    import distributed
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    features = np.random.default_rng(0).random((60, 4))
    forest = RandomForestClassifier(n_estimators=4, n_jobs=2, random_state=0)
    joblib.dump(forest.fit(features, (features[:, 0] > 0.5).astype(int)), tmp_path / "m.joblib")
    with distributed.Client(cluster) as client:
        answer = client.submit(_session_on_this_worker, str(tmp_path / "m.joblib")).result()
    assert answer == [0, 0, 0]
