"""The model worker: a forked child that loads the model and runs the rules that query it.

The parent forks (no new program is executed: the child is this very process, with the subject
already in memory), the child confines itself (:mod:`mlaudit.isolation.sandbox`), scrubs its
environment and file descriptors, loads the model and runs its rules one by one, sending one
JSON line per event through a pipe. The parent holds each rule to its budget by the clock: a
rule past its budget is killed with its worker; a worker that dies takes only the rule it was
running with it. Either way that rule is ``error`` with the cause, and the rules not yet run go
on in a fresh worker.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlaudit.core.delegation import Delegate
from mlaudit.core.errors import ConfigError, InputError, ModelNotRunnable, UsageError
from mlaudit.core.findings import JsonValue, RuleResult, Status, result_document
from mlaudit.isolation.sandbox import Confinement, Limits, confine, system_read_paths
from mlaudit.isolation.transport import (
    MAX_MESSAGE_BYTES,
    ModelInfo,
    ProtocolError,
    decode,
    encode,
    result_from_json,
)
from mlaudit.rules.base import Rule
from mlaudit.subject.model_info import LoadedModel

Progress = Callable[[str], None]
# Seconds the parent waits past a rule's budget (the rule's own budget checks come first) and
# for a worker to exit once it said it was done.
GRACE_S = 2.0
_ADDRESS_SPACE_MARGIN_BYTES = 4 << 30
# How often the parent looks at a job's cancel event while it waits for its worker.
CANCEL_POLL_S = 0.2
# Environment variables a worker keeps; the rest (tokens, keys, CI secrets) never reach it.
_KEPT_ENVIRONMENT = frozenset(
    {"PATH", "LANG", "LANGUAGE", "TZ", "PYTHONHASHSEED", "MLAUDIT_PII_SALT", "OMP_NUM_THREADS",
     "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_MAX_THREADS"}
)
_SIGNAL_CAUSES = {
    signal.SIGKILL: "out of memory, or killed",
    signal.SIGXCPU: "CPU time limit reached",
}


@dataclass(frozen=True)
class WorkerJob:
    """What a worker does, as functions the child calls (they cross by fork, not by pickle).

    ``load`` loads the model and checks the data against it; ``run_rule`` runs one rule on the
    loaded model and returns its result (the parent's budget is the one that kills).
    """

    rules: Sequence[type[Rule]]
    load: Callable[[], LoadedModel]
    run_rule: Callable[[type[Rule], LoadedModel, Progress], RuleResult]
    budget_for: Callable[[str], float]
    load_budget_s: float
    read_paths: tuple[Path, ...]
    memory_bytes: int
    strict: bool
    progress: Progress = lambda _: None
    # The run's cluster, which the parent reaches for the worker: a rule's delegated work
    # crosses the pipe as JSON both ways (the worker itself has no network).
    delegate: Delegate | None = None
    # Set from another thread to end the job: its worker is killed at once (a rule running
    # then is ``error``). For a worker that serves a cluster's tasks past one rule's clock.
    cancel: threading.Event | None = None


@dataclass
class WorkerOutcome:
    """What the workers sent back, rebuilt from JSON in the parent."""

    results: dict[str, RuleResult] = field(default_factory=dict)
    model: ModelInfo | None = None
    not_runnable: str | None = None
    confinement: Confinement | None = None


class StrictIsolationError(UsageError):
    """``--isolation strict`` and a layer could not be put in force."""


def address_space_limit() -> int:
    """The address space a worker may map: the machine's memory and a margin for what is
    mapped but never touched (thread stacks, allocator arenas), so only a real runaway hits it."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        physical = 16 << 30
    return int(physical) + _ADDRESS_SPACE_MARGIN_BYTES


def run_job(job: WorkerJob) -> WorkerOutcome:
    """Run ``job.rules`` in as many workers as crashes and overruns require."""
    outcome = WorkerOutcome()
    pending = list(job.rules)
    while True:
        _Session(job, pending, outcome).run()
        pending = [r for r in pending if r.meta.id not in outcome.results]
        if not pending or outcome.model is None:
            return outcome


class _Session:
    """One worker's life, seen from the parent."""

    def __init__(self, job: WorkerJob, rules: list[type[Rule]], outcome: WorkerOutcome) -> None:
        self.job, self.rules, self.outcome = job, rules, outcome
        self.current: type[Rule] | None = None
        self.deadline = time.monotonic() + job.load_budget_s
        self.buffer = b""
        # What the worker said of its own failure before it exited: for the failed rules.
        self.crash: _Crash | None = None
        self.answers = -1  # the pipe the parent answers delegated work on, once forked

    def run(self) -> None:
        private_dir = Path(tempfile.mkdtemp(prefix="mlaudit-worker-"))
        read_end, write_end = os.pipe()
        answer_read, self.answers = os.pipe()  # the parent's answers to delegated work
        pid = os.fork()
        if pid == 0:  # the child never returns into the parent's code
            os.close(read_end)
            os.close(self.answers)
            _child(self.job, self.rules, write_end, private_dir, answer_read)
        os.close(write_end)
        os.close(answer_read)
        try:
            cause = self._listen(read_end, pid)
        except BaseException:  # an input error, strict refusal or interrupt: no worker left
            _kill(pid)
            raise
        finally:
            os.close(read_end)
            os.close(self.answers)
            shutil.rmtree(private_dir, ignore_errors=True)
        if cause is not None:
            self._fail_current(cause)
        elif self.outcome.model is not None:
            self._fail_unrun()

    def _fail_unrun(self) -> None:
        """A worker that said it was done without running all its rules fails those rules."""
        for rule in self.rules:
            if rule.meta.id not in self.outcome.results:
                self.current = rule
                self._fail_current("the worker ended without running this rule")

    def _listen(self, read_end: int, pid: int) -> str | None:
        """Handle the worker's messages until it is done (None) or must be given up (why)."""
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                _kill(pid)
                return self._overrun()
            if self.job.cancel is not None:
                if self.job.cancel.is_set():
                    _kill(pid)
                    return "the job was cancelled"
                remaining = min(remaining, CANCEL_POLL_S)
            ready, _, _ = select.select([read_end], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_end, 1 << 20)
            if not chunk:
                return _death_cause(_reap(pid))
            self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                _kill(pid)
                return "the worker sent an oversized message"
            try:
                finished = self._handle_lines()
            except ProtocolError as error:
                _kill(pid)
                return f"the worker sent a malformed message ({error})"
            if finished:
                _reap(pid)
                return None

    def _handle_lines(self) -> bool:
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if self._handle(decode(line)):
                return True
        return False

    def _handle(self, message: dict[str, Any]) -> bool:
        """Act on one message; True when the worker has nothing more to say."""
        kind = message["kind"]
        if kind == "ready":
            confinement = Confinement(
                {str(k): bool(v) for k, v in dict(message["layers"]).items()},
                tuple(str(n) for n in message["notes"]),
            )
            self.outcome.confinement = self.outcome.confinement or confinement
        elif kind == "strict":
            raise StrictIsolationError(
                "--isolation strict: " + "; ".join(str(n) for n in message["notes"])
            )
        elif kind == "fatal":
            error = ConfigError if message.get("error") == "config" else InputError
            raise error(str(message["message"]))
        elif kind == "loaded":
            self.outcome.model = ModelInfo.from_json(message["model"])
        elif kind == "not-runnable":
            self.outcome.not_runnable = str(message["reason"])
        elif kind == "start":
            self.current = self._rule(str(message["rule"]))
            self.deadline = time.monotonic() + self.job.budget_for(self.current.meta.id) + GRACE_S
        elif kind == "result":
            result = result_from_json(message["result"])
            if self.current is None or result.rule_id != self.current.meta.id:
                raise ProtocolError(f"a result for {result.rule_id} that was not running")
            self.outcome.results[result.rule_id] = result
            self.current = None
        elif kind == "crash":
            summary, trace = message.get("error"), message.get("traceback")
            if not (isinstance(summary, str) and isinstance(trace, str)):
                raise ProtocolError("a crash message must hold an error and a traceback")
            self.crash = _Crash(summary, trace)
        elif kind == "progress":
            self.job.progress(str(message["message"]))
        elif kind == "delegate":
            self._answer(str(message["what"]), message["params"])
        elif kind == "warning":
            warnings.warn(str(message["message"]), _category(str(message["category"])),
                          stacklevel=1)
        elif kind == "done":
            return True
        else:
            raise ProtocolError(f"unknown message kind {kind!r}")
        return False

    def _answer(self, what: str, params: Any) -> None:
        """Run a rule's delegated work on the cluster and send the result (or why it failed)
        back; the rule's own deadline bounds the wait."""
        answer: dict[str, Any]
        if self.job.delegate is None or not isinstance(params, dict):
            answer = {"kind": "answer", "error": "this run has no cluster to delegate to"}
        else:
            try:
                timeout = max(self.deadline - GRACE_S - time.monotonic(), 0.0)
                answer = {"kind": "answer", "result": self.job.delegate(what, params, timeout)}
            except Exception as error:  # the cluster's failure is the rule's, reported by it
                answer = {"kind": "answer", "error": f"{type(error).__name__}: {error}"}
        with suppress(OSError):  # a worker that died meanwhile is handled by _listen
            _send(self.answers, answer)

    def _rule(self, rule_id: str) -> type[Rule]:
        for rule in self.rules:
            if rule.meta.id == rule_id and rule_id not in self.outcome.results:
                return rule
        raise ProtocolError(f"the worker started {rule_id}, which it was not given")

    def _overrun(self) -> str:
        if self.current is None:
            return f"loading the model ran past its time budget of {self.job.load_budget_s:g} s"
        budget = self.job.budget_for(self.current.meta.id)
        return f"{self.current.meta.id} ran past its time budget of {budget:g} s (worker killed)"

    def _fail_current(self, cause: str) -> None:
        """The rule that was running (every rule left, if the model was loading) is ``error``,
        with the worker's own error and traceback if it sent them before it ended."""
        crash, self.crash = self.crash, None
        if crash is not None:
            cause = f"{cause} ({crash.error})"
        if self.current is not None:
            failed = [self.current]
        else:
            failed = [r for r in self.rules if r.meta.id not in self.outcome.results]
            cause = f"{cause} while loading the model"
        for rule in failed:
            meta = rule.meta
            self.job.progress(f"{meta.id} error: {cause}")
            self.outcome.results[meta.id] = RuleResult(
                meta.id, meta.name, meta.family.value, Status.ERROR, None, cause,
                traceback=crash.traceback if crash is not None else None,
            )
        self.current = None


@dataclass(frozen=True)
class _Crash:
    """The worker's account of the exception that ended it."""

    error: str  # ``Type: message``
    traceback: str


_CATEGORIES: dict[str, type[Warning]] = {}


def _category(name: str) -> type[Warning]:
    """A warning class named as the worker's was, so the report names it the same way."""
    if not name.isidentifier():
        name = "UserWarning"
    return _CATEGORIES.setdefault(name, type(name, (UserWarning,), {}))


def _kill(pid: int) -> None:
    """The worker and whatever it forked into its process group."""
    with suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> int:
    """The worker's wait status; one that closed its pipe but lingers is killed."""
    for _ in range(int(GRACE_S / 0.01)):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    with suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def _death_cause(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            known = signal.Signals(number)
        except ValueError:
            return f"worker killed by signal {number}"
        why = _SIGNAL_CAUSES.get(known)
        return f"worker killed by {known.name}" + (f" ({why})" if why else "")
    return f"worker exited with status {os.waitstatus_to_exitcode(status)}"


# The child side: everything below runs in the forked worker only.


def _child(
    job: WorkerJob, rules: Sequence[type[Rule]], channel: int, private_dir: Path, answers: int
) -> None:
    """Confine, load, run, report; always ends the process, never returns."""
    code = 0
    try:
        os.setpgid(0, 0)
        _detach((channel, answers), private_dir)
        if job.delegate is not None:
            _PARENT_LINK.append((channel, answers))
        budgets = job.load_budget_s + sum(job.budget_for(r.meta.id) for r in rules)
        limits = Limits(cpu_s=int(budgets * (os.cpu_count() or 1)) + 10,
                        memory_bytes=job.memory_bytes)
        confinement = confine(_read_paths(job), private_dir, limits)
        _send(channel, {"kind": "ready", "layers": confinement.layers,
                        "notes": list(confinement.notes)})
        if job.strict and confinement.missing():
            _send(channel, {"kind": "strict", "notes": confinement.missing()})
            return
        _work(job, rules, channel)
        _send(channel, {"kind": "done"})
    except BaseException as error:  # a worker's own failure ends it; the parent reports it
        code = 70
        # Into the report with the rule it failed, not onto the parent's stderr; a channel
        # that is itself what failed leaves the exit status to tell.
        with suppress(BaseException):
            _send(channel, {"kind": "crash", "error": f"{type(error).__name__}: {error}",
                            "traceback": "".join(traceback.format_exception(error))})
    finally:
        os._exit(code)


def _work(job: WorkerJob, rules: Sequence[type[Rule]], channel: int) -> None:
    with warnings.catch_warnings(record=True) as caught, _threaded_joblib():
        try:
            model = job.load()
        except ModelNotRunnable as reason:
            _send(channel, {"kind": "not-runnable", "reason": str(reason)})
            return
        except UsageError as error:
            _send(channel, {"kind": "fatal", "error": "input", "message": str(error)})
            return
        finally:
            _flush_warnings(channel, caught)
        _send(channel, {"kind": "loaded", "model": ModelInfo.of(model).to_json()})
        for rule in rules:
            _send(channel, {"kind": "start", "rule": rule.meta.id})
            try:
                result = job.run_rule(rule, model, lambda text: _send(
                    channel, {"kind": "progress", "message": text}
                ))
            except ConfigError as error:
                _send(channel, {"kind": "fatal", "error": "config", "message": str(error)})
                return
            finally:
                _flush_warnings(channel, caught)
            _send(channel, {"kind": "result", "result": _encodable(result)})


def _encodable(result: RuleResult) -> dict[str, Any]:
    """The result as JSON; metrics a rule left in a form JSON cannot carry make it ``error``."""
    document = result_document(result)
    try:
        encode(document)
    except (TypeError, ValueError) as error:
        document.update(status=Status.ERROR.value, score=None, metrics={}, findings=[],
                        reason=f"the result cannot be sent as JSON: {error}")
    return document


def _flush_warnings(channel: int, caught: list[warnings.WarningMessage]) -> None:
    """Warnings the model or a library raised in the worker go to the parent's report."""
    for warning in caught:
        _send(channel, {"kind": "warning", "category": warning.category.__name__,
                        "message": str(warning.message)})
    caught.clear()


@contextmanager
def _threaded_joblib() -> Iterator[None]:
    """joblib's default backend (loky) starts new programs, which the exec filter refuses:
    inside the worker, joblib runs its jobs on threads instead."""
    import joblib

    with joblib.parallel_config(backend="threading"):
        yield


def _detach(kept: tuple[int, ...], private_dir: Path) -> None:
    """Leave the parent's descriptors and environment behind: only the ``kept`` channels
    stay open, stdin and stdout are /dev/null, HOME and TMPDIR are the private folder."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    low = 3
    for descriptor in sorted(kept):
        os.closerange(low, descriptor)
        low = descriptor + 1
    os.closerange(low, 1 << 16)
    for name in list(os.environ):
        if name not in _KEPT_ENVIRONMENT and not name.startswith("LC_"):
            del os.environ[name]
    os.environ.update(HOME=str(private_dir), TMPDIR=str(private_dir))
    tempfile.tempdir = str(private_dir)
    # Fork is the one start method that works here (the others start a new program, which
    # the exec filter refuses), and a parent that used another (a Dask worker spawns) would
    # leave every lock the model's libraries make (joblib's thread pool) registering with a
    # resource tracker whose pipe was just closed: a crash on the model's first predict.
    multiprocessing.set_start_method("fork", force=True)
    # The parent's garbage-collector hooks are its own instrumentation (a Dask worker's reads
    # its memory through /proc, which the sandbox denies: an exception at every collection).
    gc.callbacks.clear()
    sys.dont_write_bytecode = True


def _read_paths(job: WorkerJob) -> list[Path]:
    """Where the worker may read: Python and its libraries (sys.path, which holds the user's
    PYTHONPATH and, for a module:callable model, the working folder) and system libraries."""
    roots = [Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix) if p]
    roots += [Path(p).resolve() for p in sys.path if p]
    roots.append(Path(__file__).resolve().parents[1])  # mlaudit itself, wherever installed
    return [*dict.fromkeys([*roots, *job.read_paths, *system_read_paths()])]


# In a worker whose run has a cluster: the channel to the parent and the pipe it answers on.
# (A list, set once in the child: the worker is one process doing one job.)
_PARENT_LINK: list[tuple[int, int]] = []


def parent_delegate() -> Delegate | None:
    """In a worker, the run's cluster as the parent reaches it; None without a cluster."""
    return _ask_parent if _PARENT_LINK else None


def _ask_parent(what: str, params: Mapping[str, JsonValue], timeout_s: float) -> JsonValue:
    """Send delegated work to the parent and wait for its answer (the parent bounds the
    wait by this rule's deadline, and kills the worker past it)."""
    channel, answers = _PARENT_LINK[0]
    _send(channel, {"kind": "delegate", "what": what, "params": dict(params)})
    buffer = b""
    while not buffer.endswith(b"\n"):
        chunk = os.read(answers, 1 << 20)
        if not chunk:
            raise ProtocolError("the parent closed the answer channel")
        buffer += chunk
    answer = decode(buffer.rstrip(b"\n"))
    if "error" in answer:
        raise RuntimeError(f"delegated {what} failed: {answer['error']}")
    result: JsonValue = answer["result"]
    return result


def _send(channel: int, message: dict[str, Any]) -> None:
    view = memoryview(encode(message))
    while view:
        written = os.write(channel, view)
        view = view[written:]
