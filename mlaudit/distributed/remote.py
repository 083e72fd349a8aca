"""What a Dask worker runs for a delegated task, and the computations a rule may delegate.

A model computation runs in this Dask worker's :class:`~mlaudit.distributed.session.
ModelSession` for the run: the model file's bytes through the gate into an isolated worker,
loaded once and kept for the run's later tasks. A loaded model never leaves the worker that
loaded it; results come back as plain JSON. A data computation needs no model and runs here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from mlaudit.code.batches import CODE_BATCHES, scan_sent_batches
from mlaudit.core.errors import InputError
from mlaudit.core.findings import JsonValue
from mlaudit.distributed.session import ModelComputation, RemoteLoad, SessionEnded, session_for
from mlaudit.pii.tables import COLUMN_CHUNKS, analyse_column_chunks
from mlaudit.privacy.attribute import ATTRIBUTE_ATTACKS, attack_requested_columns
from mlaudit.privacy.reference import REFERENCE_FITS, fit_planned_references
from mlaudit.robustness.certify import CERTIFIED_RADII, certify_chunks
from mlaudit.robustness.evasion import EVASION_CHUNKS, attack_chunks
from mlaudit.subject.build import Subject

# The computations a rule may delegate, by name. Every one takes plain parameters whose
# ``indices`` are the work units of its task (references, row chunks, columns, files) and
# returns a list with one JSON value per unit, in order: the cluster splits a request's units
# into one task per worker thread and concatenates the tasks' lists, so a unit's value must
# depend on the unit alone (its seed included), never on which task computed it.
# Model computations run where the model is loaded: they take the loaded model too.
COMPUTATIONS: Mapping[str, ModelComputation] = {
    REFERENCE_FITS: fit_planned_references, ATTRIBUTE_ATTACKS: attack_requested_columns,
    CERTIFIED_RADII: certify_chunks, EVASION_CHUNKS: attack_chunks,
}
# Data computations need no model: nothing is loaded for them (personal data, code).
DATA_COMPUTATIONS: Mapping[str, Callable[[Subject, Mapping[str, JsonValue]], JsonValue]] = {
    CODE_BATCHES: scan_sent_batches, COLUMN_CHUNKS: analyse_column_chunks,
}


def run_remote(  # noqa: PLR0917 (Dask passes a task's arguments by position)
    model_bytes: bytes | None,
    subject: Subject,
    load: RemoteLoad | None,
    what: str,
    params: Mapping[str, JsonValue],
    timeout_s: float,
) -> JsonValue:
    """Run computation ``what`` with ``params``; in a Dask worker."""
    # The task's own thread count (the Dask worker's), known here, before any fork.
    settings = {**params, "threads": _worker_threads()}
    data = DATA_COMPUTATIONS.get(what)
    if data is not None:
        return data(subject, settings)
    if what not in COMPUTATIONS:
        raise ValueError(f"no computation is named {what!r}")
    if model_bytes is None or load is None:
        raise InputError(f"{what} needs the model, and this run has no model file to send")
    for _ in range(2):  # a session that ended as this task reached it: once more, afresh
        session = session_for(load, model_bytes, subject, COMPUTATIONS, timeout_s)
        try:
            return session.compute(what, settings, timeout_s)
        except SessionEnded:
            continue
    raise RuntimeError("the model worker ended twice before it took the task")


def start_session(
    model_bytes: bytes, subject: Subject, load: RemoteLoad, load_budget_s: float
) -> None:
    """Start this Dask worker's model session for the run (the model loads in the session's
    own thread, so the worker's task slot is free again at once)."""
    session_for(load, model_bytes, subject, COMPUTATIONS, load_budget_s)


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError):  # not in a Dask worker (a direct call)
        return os.cpu_count() or 1
