"""MLA401's work in units a cluster can share: fixed-size chunks of each column's values.

A unit is one chunk of at most ``chunk_values`` (:data:`CHUNK_VALUES`) distinct values of one
column of one data file, taken after the column's own seeded sample: the units depend on the
data, the options and the seed alone, never on how many workers there are. The rule plans them
(:class:`TablePlan`) and analyses them in rounds, in its own process or on the run's Dask
cluster, where :func:`analyse_column_chunks` rebuilds the columns a task needs from the
subject its worker holds. Either way a unit comes back as the same plain JSON (the hits in
each of its values) and the columns' statistics are aggregated from it the same way, so a
cluster run reports what a local run does.

A unit's hits carry the matched texts, not their redacted forms: the keyed hash of redaction
(and the ``ignore_values`` filter) needs the secret salt, which stays with the run instead of
travelling to the cluster; the texts only go back to the process that sent the data.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pandas as pd

from mlaudit.core.findings import JsonValue
from mlaudit.core.stats import derived_rng
from mlaudit.pii.analysis import (
    AnalysisSettings,
    Hit,
    PiiEngineError,
    TextGroup,
    analyse_groups,
    guarded,
)
from mlaudit.pii.columns import ColumnScan, PreparedColumn, prepare_column
from mlaudit.pii.scan import Values, aggregate
from mlaudit.subject.build import Subject

# Distinct values in one unit: big enough that a task's overhead (rebuilding its column) is
# small beside presidio's work, small enough that a wide column spreads over many workers.
CHUNK_VALUES: Final = 5_000
# The delegated computation's name (``mlaudit.distributed.remote.DATA_COMPUTATIONS``).
COLUMN_CHUNKS: Final = "pii-column-chunks"
# Values analysed between two budget checks and progress lines when the rule runs alone:
# several times what makes worker processes pay off (analysis.PARALLEL_MIN_TEXTS).
LOCAL_ROUND_VALUES: Final = 100_000

AnalyseUnits = Callable[[list[int]], list[JsonValue]]


@dataclass(frozen=True)
class ColumnChunks:
    """One analysed column's place among the data files and how many units it makes."""

    dataset: int
    column: int
    chunks: int


@dataclass(frozen=True)
class ChunkRequest:
    """The plain values every unit is rebuilt from: options, seed and the columns' layout."""

    seed: int
    sample_rows: int
    chunk_values: int
    settings: AnalysisSettings
    layout: tuple[ColumnChunks, ...]

    @property
    def units(self) -> list[tuple[int, int]]:
        """(position in the layout, chunk) of every unit, in order."""
        return [(p, k) for p, column in enumerate(self.layout) for k in range(column.chunks)]

    def params(self, indices: Sequence[int]) -> dict[str, JsonValue]:
        """The delegate's parameters for units ``indices``: a few hundred bytes, no data."""
        return {
            "indices": list(indices),
            "seed": self.seed,
            "sample_rows": self.sample_rows,
            "chunk_values": self.chunk_values,
            "entities": list[JsonValue](sorted(self.settings.entities)),
            "min_score": self.settings.min_score,
            "max_chars": self.settings.max_chars,
            "nlp_model": self.settings.nlp_model,
            "layout": [[c.dataset, c.column, c.chunks] for c in self.layout],
        }

    @classmethod
    def from_params(cls, params: Mapping[str, JsonValue]) -> ChunkRequest:
        nlp_model = params["nlp_model"]
        min_score = params["min_score"]
        if not isinstance(min_score, int | float) or isinstance(min_score, bool):
            raise _malformed()
        # The cluster's worker threads are the parallelism: no processes inside a task.
        settings = AnalysisSettings(
            frozenset(_strings(params["entities"])),
            min_score=float(min_score),
            max_chars=_int(params["max_chars"]),
            nlp_model=nlp_model if isinstance(nlp_model, str) else None,
            n_jobs=1,
        )
        layout = []
        for entry in _list(params["layout"]):
            dataset, column, chunks = (_int(v) for v in _list(entry))
            layout.append(ColumnChunks(dataset, column, chunks))
        return cls(
            _int(params["seed"]), _int(params["sample_rows"]), _int(params["chunk_values"]),
            settings, tuple(layout),
        )

    def prepare(self, role: str, frame: pd.DataFrame, column: int) -> ColumnScan | PreparedColumn:
        """Column ``column`` of ``frame``, sampled with its own seed (the run's seed, the
        data file's role and the column's name), so a worker can rebuild it alone."""
        series = frame.iloc[:, column]
        rng = derived_rng(self.seed, f"personal data sample: {role} {series.name}")
        return prepare_column(series, self.settings.max_chars, self.sample_rows, rng)

    def chunks(self, column: PreparedColumn) -> int:
        """How many units the column makes."""
        return -(-len(column.values.texts) // self.chunk_values)

    def chunk(self, column: PreparedColumn, chunk: int) -> Values:
        """The values of one unit of the column, with their counts."""
        values = column.values
        start = chunk * self.chunk_values
        end = start + self.chunk_values
        return dataclasses.replace(
            values, texts=values.texts[start:end], counts=values.counts[start:end]
        )


def analyse_chunks(
    request: ChunkRequest,
    column: Callable[[int], PreparedColumn],
    indices: Sequence[int],
    check_budget: Callable[[], None] = lambda: None,
) -> list[JsonValue]:
    """Units ``indices`` (their columns from ``column``), one JSON value each: the values of
    the chunk with any hit, ``[[position in the chunk, [[entity, score, text], ...]], ...]``.
    The units share one pool of batches, but a batch never mixes units, so a unit's result
    does not depend on the units analysed with it."""
    units = request.units
    groups = []
    for index in indices:
        position, chunk = units[index]
        values = request.chunk(column(position), chunk)
        groups.append(TextGroup(values.hint, values.texts))
    found = analyse_groups(groups, request.settings, check_budget)
    return [_encode(hits) for hits in found]


def analyse_column_chunks(subject: Subject, params: Mapping[str, JsonValue]) -> list[JsonValue]:
    """:data:`COLUMN_CHUNKS` on a Dask worker: rebuild each column the task's units need from
    the subject the worker holds (once per task), then analyse the units. The engine is built
    once per worker process (:func:`mlaudit.pii.analyzer.get_engine`), not per task."""
    request = ChunkRequest.from_params(params)
    prepared: dict[int, PreparedColumn] = {}

    def column(position: int) -> PreparedColumn:
        if position not in prepared:
            where = request.layout[position]
            dataset = subject.datasets[where.dataset]
            built = request.prepare(dataset.role, dataset.frame, where.column)
            if not isinstance(built, PreparedColumn) or request.chunks(built) != where.chunks:
                raise PiiEngineError(
                    f"column {where.column} of the {dataset.role} data on the worker is not "
                    "the one the run planned"
                )
            prepared[position] = built
        return prepared[position]

    indices = [_int(i) for i in _list(params["indices"])]
    return guarded(lambda: analyse_chunks(request, column, indices))


@dataclass(frozen=True)
class TablePlan:
    """Every column of every data file, prepared, and the units of the analysed ones."""

    request: ChunkRequest
    tables: tuple[tuple[ColumnScan | PreparedColumn, ...], ...]

    @classmethod
    def of(
        cls,
        frames: Sequence[tuple[str, pd.DataFrame]],
        *,
        seed: int,
        sample_rows: int,
        chunk_values: int,
        settings: AnalysisSettings,
    ) -> TablePlan:
        """``frames`` are (role, frame) pairs, in the subject's order of data files."""
        request = ChunkRequest(seed, sample_rows, chunk_values, settings, ())
        tables = tuple(
            tuple(request.prepare(role, frame, c) for c in range(frame.shape[1]))
            for role, frame in frames
        )
        layout = tuple(
            ColumnChunks(d, c, request.chunks(column))
            for d, table in enumerate(tables)
            for c, column in enumerate(table)
            if isinstance(column, PreparedColumn)
        )
        return cls(dataclasses.replace(request, layout=layout), tables)

    def column(self, position: int) -> PreparedColumn:
        where = self.request.layout[position]
        column = self.tables[where.dataset][where.column]
        assert isinstance(column, PreparedColumn)
        return column

    def analyse(
        self, indices: list[int], check_budget: Callable[[], None] = lambda: None
    ) -> list[JsonValue]:
        """Units ``indices`` analysed in this process (processes as its settings allow)."""
        return analyse_chunks(self.request, self.column, indices, check_budget)

    def run(
        self,
        analyse: AnalyseUnits,
        *,
        round_values: int = LOCAL_ROUND_VALUES,
        progress: Callable[[str], None] = lambda _: None,
        check_budget: Callable[[], None] = lambda: None,
    ) -> list[JsonValue]:
        """Every unit's result, in order, from consecutive rounds of units holding at least
        ``round_values`` values (the last, fewer); between rounds the budget is checked and
        progress said (``cells scanned 20000/80000, ETA 15 s``, estimated from the values)."""
        units = self.request.units
        chunks = [self.request.chunk(self.column(p), k) for p, k in units]
        cells = [sum(c.counts) for c in chunks]
        values = [len(c.texts) for c in chunks]
        results: list[JsonValue] = []
        started = time.monotonic()
        while len(results) < len(units):
            end, size = len(results), 0
            while end < len(units) and (end == len(results) or size < round_values):
                size += values[end]
                end += 1
            indices = list(range(len(results), end))
            found = analyse(indices)
            if len(found) != len(indices):
                raise PiiEngineError(
                    f"{len(indices)} column chunks were sent and {len(found)} results came back"
                )
            results.extend(found)
            check_budget()
            done = sum(values[:end])
            eta = (time.monotonic() - started) / max(done, 1) * (sum(values) - done)
            progress(f"cells scanned {sum(cells[:end])}/{sum(cells)}, ETA {eta:.0f} s")
        return results

    def scans(
        self, results: Sequence[JsonValue], keep: Callable[[Hit], bool] = lambda _: True
    ) -> list[list[ColumnScan]]:
        """Each data file's columns, in order, from every unit's result."""
        hits: list[list[tuple[Hit, ...]]] = [
            [() for _ in self.column(p).values.texts] for p in range(len(self.request.layout))
        ]
        for (position, chunk), result in zip(self.request.units, results, strict=True):
            for index, found in _decode(result):
                hits[position][chunk * self.request.chunk_values + index] = found
        positions = {(c.dataset, c.column): p for p, c in enumerate(self.request.layout)}
        return [
            [
                column.scanned(aggregate(column.values, hits[positions[d, c]], keep))
                if isinstance(column, PreparedColumn) else column
                for c, column in enumerate(table)
            ]
            for d, table in enumerate(self.tables)
        ]


def _encode(found: Sequence[tuple[Hit, ...]]) -> JsonValue:
    encoded: list[JsonValue] = []
    for index, hits in enumerate(found):
        if hits:
            listed: list[JsonValue] = [[hit.entity, hit.score, hit.text] for hit in hits]
            encoded.append([index, listed])
    return encoded


def _decode(result: JsonValue) -> list[tuple[int, tuple[Hit, ...]]]:
    decoded = []
    for entry in _list(result):
        index, hits = _list(entry)
        found = []
        for hit in _list(hits):
            entity, score, text = _list(hit)
            if not (isinstance(entity, str) and isinstance(score, float) and isinstance(text, str)):
                raise _malformed()
            found.append(Hit(entity, score, text))
        decoded.append((_int(index), tuple(found)))
    return decoded


def _malformed() -> PiiEngineError:
    return PiiEngineError("a column chunk's request or result is malformed")


def _list(value: JsonValue) -> list[JsonValue]:
    if not isinstance(value, list):
        raise _malformed()
    return value


def _int(value: JsonValue) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _malformed()
    return value


def _strings(value: JsonValue) -> list[str]:
    strings = [v for v in _list(value) if isinstance(v, str)]
    if len(strings) != len(_list(value)):
        raise _malformed()
    return strings
