"""One loaded model per Dask worker for the length of a run.

A cluster task that needs the model does not load it itself: the first one on a Dask worker
starts a :class:`ModelSession`, which writes the audited bytes to a private folder, checks
their sha256, scans them, asks the load gate, and loads the model in an isolated worker
(:func:`mlaudit.isolation.worker.run_job`) exactly as a local run does. That worker then
serves the run's tasks on this Dask worker one after another, so the model is loaded once per
Dask worker and run, not once per task (the load, not the work, dominated a task's cost).

The isolated worker has no network and no way to be called: it asks for work. Its only
"rule" loops asking the parent, over the worker's delegate pipe, for the next request and
sending the previous one's result with the question; the parent (this module, in a thread of
the Dask worker) answers from a queue the tasks fill. A session ends when the run closes it,
after :data:`IDLE_S` without a request, or when a task's time runs out (the worker is killed:
a computation past its rule's budget is not left running), and the next task starts afresh.
"""

from __future__ import annotations

import dataclasses
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlaudit.core.errors import InputError
from mlaudit.core.findings import Family, Finding, JsonValue, RuleResult, Severity, Status
from mlaudit.core.hashing import sha256_file
from mlaudit.core.load_options import LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.isolation.worker import WorkerJob, address_space_limit, parent_delegate, run_job
from mlaudit.loaders import loader_for
from mlaudit.loaders.load_gate import decide
from mlaudit.rules.base import Requirement, Rule, RuleContext, RuleMeta
from mlaudit.subject.build import Subject, open_model
from mlaudit.subject.model_info import LoadedModel

ModelComputation = Callable[[LoadedModel, Subject, Mapping[str, JsonValue]], JsonValue]
# A session with no request for this long ends (a run that died without closing it).
IDLE_S = 300.0
# The serving worker's clock: far past any run, since requests, not one rule, bound its work
# (each request is bounded by its task's timeout, which kills the worker past it).
_LIFETIME_S = 24 * 3600.0
# What the serving worker asks its parent for, and what tells it to stop.
_NEXT = "next-request"
_STOP: dict[str, JsonValue] = {"stop": True}


@dataclass(frozen=True)
class RemoteLoad:
    """What a task needs to load the model as the run did: the run it belongs to (a session
    serves one run), the file's name and hash, the artifact rules' results the gate weighs,
    and the run's load settings."""

    run: str
    file_name: str
    sha256: str
    artifact_results: tuple[RuleResult, ...]
    trust_model: bool
    extra_allowed: frozenset[str]
    load_options: LoadOptions
    isolation: str


@dataclass(frozen=True)
class _InProcess:
    """Isolation none: the model loaded in the Dask worker itself, and what it computes."""

    model: LoadedModel
    subject: Subject
    computations: Mapping[str, ModelComputation]


class SessionEnded(RuntimeError):
    """The session ended (idle, closed, or its worker died) before it took the request."""


class ModelSession:
    """The audited model, loaded once on this Dask worker, computing the run's requests."""

    def __init__(
        self,
        load: RemoteLoad,
        model_bytes: bytes,
        subject: Subject,
        computations: Mapping[str, ModelComputation],
        load_timeout_s: float,
    ) -> None:
        self._requests: queue.Queue[dict[str, JsonValue]] = queue.Queue()
        self._replies: queue.Queue[dict[str, JsonValue]] = queue.Queue()
        self._busy = threading.Lock()  # the worker computes one request at a time
        self._state = threading.Lock()
        self._cancel = threading.Event()
        self.ended: str | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="mlaudit-session-"))
        try:
            job = self._job(load, model_bytes, subject, computations, load_timeout_s)
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        threading.Thread(target=self._serve, args=(job,), daemon=True,
                         name=f"mlaudit-session-{load.run}").start()

    def compute(self, what: str, params: Mapping[str, JsonValue], timeout_s: float) -> JsonValue:
        """Computation ``what`` on the loaded model; past ``timeout_s`` the worker is killed."""
        with self._busy:
            with self._state:
                if self.ended is not None:
                    raise SessionEnded(self.ended)
                self._requests.put({"what": what, "params": dict(params)})
            try:
                reply = self._replies.get(timeout=timeout_s)
            except queue.Empty:
                self.close(f"{what} ran past its {timeout_s:.0f} s")
                raise TimeoutError(
                    f"{what} did not finish on the worker within {timeout_s:.0f} s"
                ) from None
        if "error" in reply:
            raise RuntimeError(str(reply["error"]))
        return reply["result"]

    def close(self, why: str = "the run ended") -> None:
        """End the session: an idle worker exits, a busy one is killed."""
        with self._state:
            self.ended = self.ended or why
        if self._busy.locked():
            self._cancel.set()
        self._requests.put(_STOP)

    def _job(
        self,
        load: RemoteLoad,
        model_bytes: bytes,
        subject: Subject,
        computations: Mapping[str, ModelComputation],
        load_timeout_s: float,
    ) -> WorkerJob | _InProcess:
        """The isolated worker's job (or, with isolation none, the model loaded here)."""
        path = self._folder / load.file_name
        path.write_bytes(model_bytes)
        if sha256_file(path) != load.sha256:
            raise InputError("the model bytes the task received are not the audited file's")
        artifact = open_model(str(path), load.extra_allowed)
        decision = decide(artifact, load.artifact_results, trust_model=load.trust_model)
        loader = loader_for(artifact.format)
        if not decision.may_load or loader is None:
            raise InputError(f"the load gate refused the model on the worker: {decision.summary()}")
        here = dataclasses.replace(subject, model=artifact)

        def load_model() -> LoadedModel:
            return loader(artifact, trusted=load.trust_model, extra_allowed=load.extra_allowed,
                          cache=RunCache(), options=load.load_options)

        if load.isolation == "none":
            return _InProcess(load_model(), here, computations)

        def serve(_rule: type[Rule], model: LoadedModel, _progress: Callable[[str], None]
                  ) -> RuleResult:
            _serve_requests(model, here, computations)
            meta = _ServeRequests.meta
            return RuleResult(meta.id, meta.name, meta.family.value, Status.PASSED, None)

        return WorkerJob(
            rules=[_ServeRequests], load=load_model, run_rule=serve,
            budget_for=lambda _: _LIFETIME_S, load_budget_s=load_timeout_s,
            read_paths=(path,), memory_bytes=address_space_limit(),
            strict=load.isolation == "strict", delegate=self._exchange, cancel=self._cancel,
        )

    def _serve(self, job: WorkerJob | _InProcess) -> None:
        """The session's thread: the isolated worker's life, or requests computed here."""
        why = "the session ended"
        try:
            if isinstance(job, WorkerJob):
                why = _ended(run_job(job).results.get(_ServeRequests.meta.id))
            else:
                self._serve_here(job)
        except BaseException as error:  # the worker's failure is the waiting task's error
            why = f"{type(error).__name__}: {error}"
        finally:
            with self._state:
                self.ended = self.ended or why
            self._replies.put({"error": f"the model worker ended: {self.ended}"})
            shutil.rmtree(self._folder, ignore_errors=True)

    def _serve_here(self, here: _InProcess) -> None:
        """Isolation none: the run's choice, so the model computes in this Dask worker."""
        request = self._exchange(_NEXT, {}, 0.0)
        while isinstance(request, dict) and "what" in request:
            self._replies.put(_computed(here.model, here.subject, here.computations, request))
            request = self._exchange(_NEXT, {}, 0.0)

    def _exchange(self, what: str, params: Mapping[str, JsonValue], _timeout: float) -> JsonValue:
        """The worker's question: it hands over its last result and waits for the next
        request (or the word to stop)."""
        if what != _NEXT:
            return {"error": f"a serving worker asked for {what!r}"}
        if params:
            self._replies.put(dict(params))
        try:
            return self._requests.get(timeout=IDLE_S)
        except queue.Empty:
            with self._state:
                if self._requests.empty():
                    self.ended = self.ended or f"idle for {IDLE_S:.0f} s"
                    return _STOP
            return self._requests.get()


class _ServeRequests(Rule):
    """A model worker serving a cluster's requests, run as the isolated worker runs a rule.

    **What it checks**: nothing; it computes what the run's tasks ask of the loaded model.

    **Why it matters**: the model is loaded once per Dask worker, through the same gate.

    **How to fix**: n/a.

    **Options**: none.
    """

    # Never registered as a rule: the worker machinery only needs its id.
    meta = RuleMeta(
        id="SERVE", name="Cluster requests", family=Family.PRIVACY,
        severity=Severity.INFO, requires=frozenset({Requirement.MODEL}),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        return iter(())


def _serve_requests(
    model: LoadedModel, subject: Subject, computations: Mapping[str, ModelComputation]
) -> None:
    """In the isolated worker: ask for a request, compute it, hand the result over with the
    next question, until told to stop."""
    ask = parent_delegate()
    if ask is None:
        raise RuntimeError("a serving worker needs its parent's channel")
    request = ask(_NEXT, {}, 0.0)
    while isinstance(request, dict) and "what" in request:
        request = ask(_NEXT, _computed(model, subject, computations, request), 0.0)


def _computed(
    model: LoadedModel,
    subject: Subject,
    computations: Mapping[str, ModelComputation],
    request: Mapping[str, Any],
) -> dict[str, JsonValue]:
    """One request's result, or its failure as the task will report it."""
    try:
        compute = computations[str(request["what"])]
        return {"result": compute(model, subject, request["params"])}
    except Exception as error:  # the task raises it; the session goes on
        return {"error": f"{type(error).__name__}: {error}"}


def _ended(result: RuleResult | None) -> str:
    """Why a serving worker's job ended, from its outcome."""
    if result is None:
        return "the model worker did not start"
    if result.status is Status.PASSED:
        return "the session ended"
    return result.reason or "the model worker failed"


# The sessions of this Dask worker process, by run.
_SESSIONS: dict[str, ModelSession] = {}
_SESSIONS_LOCK = threading.Lock()


def session_for(
    load: RemoteLoad,
    model_bytes: bytes,
    subject: Subject,
    computations: Mapping[str, ModelComputation],
    load_timeout_s: float,
) -> ModelSession:
    """This worker's session for ``load.run``; started (the model loaded) on first use."""
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(load.run)
        if session is None or session.ended is not None:
            session = ModelSession(load, model_bytes, subject, computations, load_timeout_s)
            _SESSIONS[load.run] = session
        return session


def close_session(run: str) -> bool:
    """End this worker's session for ``run`` (the client calls it on every worker when the
    run ends); True if there was one."""
    with _SESSIONS_LOCK:
        session = _SESSIONS.pop(run, None)
    if session is None:
        return False
    session.close()
    return True
