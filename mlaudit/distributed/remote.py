"""What a Dask worker runs for a delegated task: the model file's bytes through the gate into
an isolated worker, one computation there, plain JSON back.

Each task writes the bytes to a private folder, checks their sha256 against the audited
file's, scans them (:func:`mlaudit.subject.build.open_model`: sniff, static inventory), asks
the load gate with the artifact rules' results of the run, and loads the model with the same
loader, in the same isolated worker (:func:`mlaudit.isolation.worker.run_job`) unless the
run's isolation is ``none``. A loaded model never leaves the worker that loaded it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlaudit.core.errors import InputError
from mlaudit.core.findings import Family, Finding, JsonValue, RuleResult, Severity, Status
from mlaudit.core.hashing import sha256_file
from mlaudit.core.load_options import LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.isolation.worker import WorkerJob, run_job
from mlaudit.loaders import loader_for
from mlaudit.loaders.load_gate import decide
from mlaudit.privacy.reference import REFERENCE_FITS, fit_planned_references
from mlaudit.rules.base import Requirement, Rule, RuleContext, RuleMeta
from mlaudit.subject.build import Subject, open_model
from mlaudit.subject.model_info import LoadedModel

# The computations a rule may delegate, by name: each takes the loaded model, the subject and
# plain parameters, and returns plain JSON.
COMPUTATIONS: Mapping[
    str, Callable[[LoadedModel, Subject, Mapping[str, JsonValue]], JsonValue]
] = {REFERENCE_FITS: fit_planned_references}
# Address space an isolated task may map beyond the machine's memory (thread stacks, arenas).
_HEADROOM_BYTES = 4 << 30


@dataclass(frozen=True)
class RemoteLoad:
    """What a task needs to load the model as the run did: the file's name and hash, the
    artifact rules' results the gate weighs, and the run's load settings."""

    file_name: str
    sha256: str
    artifact_results: tuple[RuleResult, ...]
    trust_model: bool
    extra_allowed: frozenset[str]
    load_options: LoadOptions
    isolation: str


class _DelegatedTask(Rule):
    """A delegated computation on the model, run as the isolated worker runs a rule.

    **What it checks**: nothing; it carries a cluster task.

    **Why it matters**: the task loads the model as the run does.

    **How to fix**: n/a.

    **Options**: none.
    """

    # Never registered as a rule: the worker machinery only needs its id.
    meta = RuleMeta(
        id="DELEGATED", name="Delegated cluster task", family=Family.PRIVACY,
        severity=Severity.INFO, requires=frozenset({Requirement.MODEL}),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        return iter(())


def run_remote(  # noqa: PLR0917 (Dask passes a task's arguments by position)
    model_bytes: bytes,
    subject: Subject,
    load: RemoteLoad,
    what: str,
    params: Mapping[str, JsonValue],
    timeout_s: float,
) -> JsonValue:
    """Run computation ``what`` on the model, loaded from ``model_bytes``; in a Dask worker."""
    compute = COMPUTATIONS[what]
    folder = Path(tempfile.mkdtemp(prefix="mlaudit-task-"))
    try:
        path = folder / load.file_name
        path.write_bytes(model_bytes)
        if sha256_file(path) != load.sha256:
            raise InputError("the model bytes the task received are not the audited file's")
        artifact = open_model(str(path), load.extra_allowed)
        decision = decide(artifact, load.artifact_results, trust_model=load.trust_model)
        loader = loader_for(artifact.format)
        if not decision.may_load or loader is None:
            raise InputError(f"the load gate refused the model on the worker: {decision.summary()}")
        here = dataclasses.replace(subject, model=artifact)
        # The task's own thread count (the Dask worker's), known here, before any fork.
        settings = {**params, "threads": _worker_threads()}

        def load_model() -> LoadedModel:
            return loader(artifact, trusted=load.trust_model, extra_allowed=load.extra_allowed,
                          cache=RunCache(), options=load.load_options)

        if load.isolation == "none":
            return compute(load_model(), here, settings)
        return _isolated(load_model, lambda model: compute(model, here, settings), path,
                         timeout_s, strict=load.isolation == "strict")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _isolated(
    load_model: Callable[[], LoadedModel],
    compute: Callable[[LoadedModel], JsonValue],
    path: Path,
    timeout_s: float,
    *,
    strict: bool,
) -> JsonValue:
    """``compute`` on the model in an isolated worker; its result crosses back as JSON."""
    meta = _DelegatedTask.meta

    def run(_rule: type[Rule], model: LoadedModel, _progress: Callable[[str], None]) -> RuleResult:
        return RuleResult(meta.id, meta.name, meta.family.value, Status.PASSED, None,
                          metrics={"result": compute(model)})

    outcome = run_job(WorkerJob(
        rules=[_DelegatedTask], load=load_model, run_rule=run,
        budget_for=lambda _: timeout_s, load_budget_s=timeout_s, read_paths=(path,),
        memory_bytes=_memory_bytes(), strict=strict,
    ))
    if outcome.not_runnable is not None:
        raise InputError(f"the model cannot run on the worker: {outcome.not_runnable}")
    result = outcome.results.get(meta.id)
    if result is None or result.status is not Status.PASSED:
        raise RuntimeError(result.reason if result is not None else "the task did not run")
    return result.metrics["result"]


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError):  # not in a Dask worker (a direct call)
        return os.cpu_count() or 1


def _memory_bytes() -> int:
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        physical = 16 << 30
    return int(physical) + _HEADROOM_BYTES
