"""The contract between a rule that hands work to the run's cluster and the cluster.

A rule calls ``delegate(what, params, timeout_s)``: ``what`` names a registered computation,
``params`` is plain JSON whose ``indices`` are the work units (references, row chunks,
columns, file batches), and the answer is one JSON value per unit, in the order given. The
cluster splits the units into one task per worker thread. Defined here, at the bottom of the
pipeline, so that the machinery packages that build requests (code, privacy, robustness,
personal data) and the rules that send them share one definition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mlaudit.core.findings import JsonValue

Delegate = Callable[[str, Mapping[str, JsonValue], float], JsonValue]
# What every delegate answers without a task: how many tasks its cluster runs at once.
CLUSTER_THREADS = "cluster-threads"
# An optional key of ``params``: an object mapping each unit (its index, as a string) to what
# only that unit needs (a batch's file texts, say). Each task receives its own units' entries
# alone, not the whole request's.
PER_UNIT = "per_unit"


def whole_param(params: Mapping[str, JsonValue], name: str) -> int:
    """A whole-number parameter of a delegated request, checked (the request may come from a
    model worker a hostile model controls; an assertion would vanish under python -O)."""
    value = params.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"the request's {name!r} must be a whole number, not {value!r}")
    return value
