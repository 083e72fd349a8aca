"""The run's Dask cluster and the delegate through which rules reach it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlaudit.core.errors import UsageError
from mlaudit.core.findings import JsonValue, RuleResult
from mlaudit.core.load_options import LoadOptions
from mlaudit.distributed.remote import RemoteLoad, run_remote
from mlaudit.rules.base import CLUSTER_THREADS, Delegate
from mlaudit.subject.build import Subject

DASK_EXTRA = "dask"
# How long joining a scheduler may take before the run gives up with a usage error.
CONNECT_TIMEOUT_S = 30.0
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
        with client:
            yield Cluster(client)
        return
    workers = settings.workers or 1
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
    ) as local, Client(local) as client:
        yield Cluster(client)


class Cluster:
    """A connected Dask client, and delegates that send a run's work to its workers."""

    def __init__(self, client: Any) -> None:
        self.client = client
        # Workers import what a task runs once, when the cluster opens, not in the first
        # rule's budget (scikit-learn, pandas and mlaudit take seconds to import).
        client.run(importlib.import_module, run_remote.__module__)

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
    ) -> Delegate:
        """A delegate for one run: its tasks carry the model file's bytes, the subject's data
        and what the gate needs (the artifact rules' results, the run's load settings)."""
        path = subject.model.path
        if path is None or not path.is_file() or subject.model.sha256 is None:
            raise UsageError("a cluster needs a model file to send to its workers")
        load = RemoteLoad(
            path.name, subject.model.sha256, tuple(artifact_results), trust_model,
            extra_allowed, load_options, isolation,
        )
        scattered: dict[str, Any] = {}

        def delegate(what: str, params: Mapping[str, JsonValue], timeout_s: float) -> JsonValue:
            if what == CLUSTER_THREADS:
                return self.threads()
            if not scattered:  # once per run: the bytes and the data go to every worker
                scattered["model"] = self.client.scatter(path.read_bytes(), broadcast=True)
                scattered["subject"] = self.client.scatter(subject, broadcast=True)
            return self._fan_out(what, dict(params), scattered, load, timeout_s)

        return delegate

    def _fan_out(
        self,
        what: str,
        params: dict[str, JsonValue],
        scattered: Mapping[str, Any],
        load: RemoteLoad,
        timeout_s: float,
    ) -> JsonValue:
        """``params["indices"]`` in as many contiguous runs as the cluster has threads, one task
        each (a task loads the model once for its run), results concatenated in order."""
        from distributed import wait

        indices = requested_rows(what, params)
        tasks = max(min(self.threads(), len(indices)), 1)
        runs = [indices[i * len(indices) // tasks:(i + 1) * len(indices) // tasks]
                for i in range(tasks)]
        futures = [
            self.client.submit(
                run_remote, scattered["model"], scattered["subject"], load, what,
                {**params, "indices": run}, timeout_s,
                retries=TASK_RETRIES, pure=False,
            )
            for run in runs
        ]
        done = wait(futures, timeout=timeout_s, return_when="ALL_COMPLETED")
        if done.not_done:
            self.client.cancel(list(done.not_done))
            raise TimeoutError(
                f"{len(done.not_done)} of {len(futures)} {what} tasks did not finish on the "
                f"cluster within the rule's {timeout_s:.0f} s"
            )
        results: list[JsonValue] = []
        for future in futures:
            part = future.result()
            assert isinstance(part, list)
            results.extend(part)
        return results


def requested_rows(what: str, params: dict[str, JsonValue]) -> list[int]:
    """The row numbers a delegated request asks for, taken out of ``params``. The request
    comes from the model worker, which a hostile model may control: it is checked, not
    asserted (an assertion vanishes under python -O)."""
    indices = params.pop("indices", None)
    if not isinstance(indices, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in indices
    ):
        raise ValueError(f"delegated {what}: indices must be a list of row numbers")
    return [int(i) for i in indices if isinstance(i, int)]
