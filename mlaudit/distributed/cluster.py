"""The run's Dask cluster and the delegate through which rules reach it."""

from __future__ import annotations

import importlib
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlaudit.core.delegation import CLUSTER_THREADS, PER_UNIT, Delegate
from mlaudit.core.errors import UsageError
from mlaudit.core.findings import JsonValue, RuleResult
from mlaudit.core.load_options import LoadOptions
from mlaudit.distributed.remote import run_remote, start_session
from mlaudit.distributed.session import RemoteLoad, close_session
from mlaudit.loaders.load_gate import decide
from mlaudit.subject.build import Subject

DASK_EXTRA = "dask"
# How long joining a scheduler may take before the run gives up with a usage error.
CONNECT_TIMEOUT_S = 30.0
# How long the end of a run waits for the model sessions it started to be started, so that
# it can close them (a session it misses ends itself when idle).
SESSION_START_WAIT_S = 10.0
# A task is retried this many times when its Dask worker dies (then the rule is ``error``).
TASK_RETRIES = 1


@dataclass(frozen=True)
class ClusterSettings:
    """``scheduler``: the address of a running Dask scheduler; else ``workers`` local worker
    processes, started for the run (one thread each)."""

    scheduler: str | None = None
    workers: int | None = None

    @property
    def wanted(self) -> bool:
        return self.scheduler is not None or self.workers is not None


@contextmanager
def open_cluster(settings: ClusterSettings) -> Iterator[Cluster | None]:
    """The cluster ``settings`` name, for the length of a run; None when they name none."""
    if not settings.wanted:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(
            "--dask-scheduler and --workers need Dask: pip install 'mlaudit[dask]'"
        ) from None
    if settings.scheduler is not None:
        try:
            client = Client(settings.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            raise UsageError(
                f"cannot reach the Dask scheduler {settings.scheduler}: {error}"
            ) from None
        with client, _closing(Cluster(client)) as cluster:
            yield cluster
        return
    workers = settings.workers or 1
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
    ) as local, Client(local) as client, _closing(Cluster(client)) as cluster:
        yield cluster


@contextmanager
def _closing(cluster: Cluster) -> Iterator[Cluster]:
    try:
        yield cluster
    finally:
        cluster.close_sessions()


class Cluster:
    """A connected Dask client, and delegates that send a run's work to its workers."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._runs: list[str] = []  # the runs whose workers may hold a loaded model
        # Futures of the session starts: kept until the sessions close, since Dask forgets
        # (and may cancel) a task whose future is dropped.
        self._starting: list[Any] = []
        self._starters: list[threading.Thread] = []
        # Workers import what a task runs once, when the cluster opens, not in the first
        # rule's budget (scikit-learn, pandas and mlaudit take seconds to import).
        client.run(importlib.import_module, run_remote.__module__)

    def close_sessions(self) -> None:
        """End the model sessions of this client's runs on every worker (a worker that
        is gone has nothing to end; a session left behind ends itself when idle)."""
        # A session still being started would start after the close and sit idle: the
        # starts finish first (each is only a scatter and a submit).
        for starter in self._starters:
            starter.join(timeout=SESSION_START_WAIT_S)
        with suppress(Exception):  # a start pinned to a worker that died never ends: bounded
            from distributed import wait

            wait(self._starting, timeout=SESSION_START_WAIT_S)
        for run in self._runs:
            with suppress(Exception):
                self.client.run(close_session, run)
        self._runs.clear()
        self._starting.clear()
        self._starters.clear()

    def threads(self) -> int:
        """Worker threads in the cluster now: how many tasks run at once."""
        return int(sum(self.client.nthreads().values()))

    def delegate_for(
        self,
        subject: Subject,
        artifact_results: Sequence[RuleResult],
        *,
        trust_model: bool,
        extra_allowed: frozenset[str],
        load_options: LoadOptions,
        isolation: str,
        load_budget_s: float,
    ) -> Delegate:
        """A delegate for one run: its tasks carry the model file's bytes (when the run has
        a model file), the subject's data and what the gate needs (the artifact rules'
        results, the run's load settings).

        When the gate lets the model load, every worker starts loading it now, in the
        background, while the run loads its own and runs its first rules: a rule's first
        request then finds the model loaded instead of waiting for it."""
        path, sha256 = subject.model.path, subject.model.sha256
        load = None
        if path is not None and path.is_file() and sha256 is not None:
            load = RemoteLoad(
                uuid.uuid4().hex, path.name, sha256, tuple(artifact_results), trust_model,
                extra_allowed, load_options, isolation,
            )
            self._runs.append(load.run)
        shipment = _Shipment(self.client, path if load is not None else None, subject)
        if load is not None and decide(
            subject.model, artifact_results, trust_model=trust_model
        ).may_load:
            starter = threading.Thread(
                target=self._start_sessions, args=(shipment, load, load_budget_s), daemon=True,
                name=f"mlaudit-sessions-{load.run}",
            )
            self._starters.append(starter)
            starter.start()

        def delegate(what: str, params: Mapping[str, JsonValue], timeout_s: float) -> JsonValue:
            if what == CLUSTER_THREADS:
                return self.threads()
            return self._fan_out(what, dict(params), shipment, load, timeout_s)

        return delegate

    def _start_sessions(self, shipment: _Shipment, load: RemoteLoad, load_budget_s: float) -> None:
        """Every worker's model session for the run, started (a failure here is only lost
        time: the first request starts the session again and reports why it cannot)."""
        with suppress(Exception):
            model, data = shipment.get()
            self._starting.extend(
                self.client.submit(
                    start_session, model, data, load, load_budget_s, workers=[address],
                    allow_other_workers=False, pure=False,
                )
                for address in self.client.scheduler_info()["workers"]
            )

    def _fan_out(
        self,
        what: str,
        params: dict[str, JsonValue],
        shipment: _Shipment,
        load: RemoteLoad | None,
        timeout_s: float,
    ) -> JsonValue:
        """The request's units, one task per cluster thread (:func:`split_request`), the
        tasks' results concatenated in order."""
        from distributed import wait

        model, data = shipment.get()
        parts = split_request(what, params, self.threads())
        futures = [
            self.client.submit(
                run_remote, model, data, load, what, part,
                timeout_s, retries=TASK_RETRIES, pure=False,
            )
            for part in parts
        ]
        done = wait(futures, timeout=timeout_s, return_when="ALL_COMPLETED")
        if done.not_done:
            self.client.cancel(list(done.not_done))
            raise TimeoutError(
                f"{len(done.not_done)} of {len(futures)} {what} tasks did not finish on the "
                f"cluster within the rule's {timeout_s:.0f} s"
            )
        results: list[JsonValue] = []
        for future, part in zip(futures, parts, strict=True):
            # One value per unit: an answer of another shape (a computation's bug, or a
            # hostile model's doing in its worker) is an error, never a misaligned result.
            answer = future.result()
            units = part["indices"]
            if not isinstance(answer, list) or not isinstance(units, list) or (
                len(answer) != len(units)
            ):
                raise ValueError(f"delegated {what}: a task's answer is not one value per unit")
            results.extend(answer)
        return results


def requested_units(what: str, params: dict[str, JsonValue]) -> list[int]:
    """The work units a delegated request asks for, taken out of ``params``. The request
    comes from the model worker, which a hostile model may control: it is checked, not
    asserted (an assertion vanishes under python -O)."""
    indices = params.pop("indices", None)
    if not isinstance(indices, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in indices
    ):
        raise ValueError(f"delegated {what}: indices must be a list of unit numbers")
    return [int(i) for i in indices if isinstance(i, int)]



class _Shipment:
    """What a run sends every worker once, scattered on first use (by whichever thread
    needs it first): the model file's bytes (None without a model file) and the subject."""

    def __init__(self, client: Any, model_path: Path | None, subject: Subject) -> None:
        self._client, self._model_path, self._subject = client, model_path, subject
        self._lock = threading.Lock()
        self._sent: tuple[Any, Any] | None = None

    def get(self) -> tuple[Any, Any]:
        with self._lock:
            if self._sent is None:
                model = (
                    None if self._model_path is None
                    else self._client.scatter(self._model_path.read_bytes(), broadcast=True)
                )
                self._sent = (model, self._client.scatter(self._subject, broadcast=True))
            return self._sent


def split_request(
    what: str, params: Mapping[str, JsonValue], threads: int
) -> list[dict[str, JsonValue]]:
    """A request's units in as many contiguous runs as there are ``threads`` (fewer when
    there are fewer units), one task's parameters each: the request's shared parameters,
    the run's units, and only those units' own entries of ``params[PER_UNIT]``."""
    shared = dict(params)
    indices = requested_units(what, shared)
    per_unit = shared.pop(PER_UNIT, None)
    if per_unit is not None and not isinstance(per_unit, dict):
        raise ValueError(f"delegated {what}: {PER_UNIT} must map units to their parameters")
    tasks = max(min(threads, len(indices)), 1)
    parts: list[dict[str, JsonValue]] = []
    for i in range(tasks):
        run = indices[i * len(indices) // tasks:(i + 1) * len(indices) // tasks]
        own: dict[str, JsonValue] = {}
        if per_unit is not None:
            own[PER_UNIT] = {str(u): per_unit[str(u)] for u in run if str(u) in per_unit}
        parts.append({**shared, **own, "indices": list(run)})
    return parts
