"""Attacked rows in fixed-size chunks, computed in waves as the rule's time allows.

A chunk is the robustness rules' unit of work, locally and on a cluster: chunk ``c`` holds the
attacked rows ``c * size`` to ``(c + 1) * size`` (the last one fewer), whatever the number of
workers, and whatever is random in it is seeded from the run seed and ``c`` alone. So a
chunk's result does not depend on where, with which others, or in which order it is computed,
and a cluster run reports what the local run does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mlaudit.core.delegation import Delegate
from mlaudit.core.findings import JsonValue


def chunk_count(rows: int, size: int) -> int:
    return math.ceil(rows / size)


def chunk_slice(chunk: int, rows: int, size: int) -> slice:
    """The positions of chunk ``chunk`` among ``rows`` attacked rows."""
    return slice(chunk * size, min((chunk + 1) * size, rows))


def encode_radii(radii: np.ndarray) -> list[JsonValue]:
    """Radii as plain JSON: inf (nothing found, or all certified) becomes null."""
    return [float(r) if math.isfinite(r) else None for r in radii.tolist()]


def decode_radii(values: JsonValue) -> np.ndarray:
    """Radii back from :func:`encode_radii`; anything else is refused (a task's answer)."""
    if not isinstance(values, list):
        raise ValueError("a chunk's radii must be a list")
    radii = []
    for value in values:
        if value is None:
            radii.append(math.inf)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            radii.append(float(value))
        else:
            raise ValueError(f"a chunk's radius must be a number or null, not {value!r}")
    return np.array(radii, dtype=np.float64)


@dataclass(frozen=True)
class ChunkRun:
    """The values of the chunks computed (the first ``len(values)``, in order) and, when the
    rule's time did not allow all of them, why not."""

    values: list[JsonValue]
    scaled_down: str | None = None


# Computes some chunks (given by index) and returns one value per chunk, in order.
ComputeChunks = Callable[[list[int]], list[JsonValue]]


@dataclass(frozen=True)
class ChunkPlan:
    """``chunks`` chunks over ``rows`` rows, computed ``wave`` at a time (one chunk per task
    locally; a few per worker thread on a cluster), none started past ``stop_at`` as
    projected from the waves before (the first wave always runs)."""

    rows: int
    size: int
    wave: int
    stop_at: float
    what: str  # what is done to the rows, for progress: "rows certified"

    @property
    def chunks(self) -> int:
        return chunk_count(self.rows, self.size)


def map_chunks(
    plan: ChunkPlan,
    compute: ComputeChunks,
    *,
    progress: Callable[[str], None],
    check_budget: Callable[[], None],
) -> ChunkRun:
    """Every chunk of ``plan`` through ``compute``, wave by wave, as long as time allows."""
    values: list[JsonValue] = []
    spent = 0.0
    while len(values) < plan.chunks:
        wave = list(range(len(values), min(len(values) + plan.wave, plan.chunks)))
        if values and spent / len(values) * len(wave) > plan.stop_at - time.monotonic():
            done = _rows_in(len(values), plan)
            return ChunkRun(values, f"{plan.what}: {done} of {plan.rows} within the time the "
                            "rule allows for it")
        check_budget()
        started = time.monotonic()
        answers = compute(wave)
        if len(answers) != len(wave):
            raise ValueError(f"{len(answers)} results for {len(wave)} chunks")
        values.extend(answers)
        spent += time.monotonic() - started
        eta = spent / len(values) * (plan.chunks - len(values))
        progress(f"{plan.what} {_rows_in(len(values), plan)}/{plan.rows}, ETA {eta:.0f} s")
    return ChunkRun(values)


def _rows_in(chunks: int, plan: ChunkPlan) -> int:
    return min(chunks * plan.size, plan.rows)


def delegated(
    delegate: Delegate,
    what: str,
    params: dict[str, JsonValue],
    deadline: float,
) -> ComputeChunks:
    """Chunks computed by a cluster computation ``what``, waiting at most until ``deadline``."""

    def compute(chunks: list[int]) -> list[JsonValue]:
        answer = delegate(what, {**params, "indices": list(chunks)},
                          max(deadline - time.monotonic(), 0.0))
        if not isinstance(answer, list):
            raise ValueError(f"{what}: the cluster answered {type(answer).__name__}, not a list")
        return answer

    return compute


def chunk_indices(params: Sequence[JsonValue] | JsonValue) -> list[int]:
    """The chunk numbers of a task's ``indices``."""
    if not isinstance(params, list):
        raise ValueError("indices must be a list of chunk numbers")
    return [int(i) for i in params if isinstance(i, int) and not isinstance(i, bool)]
