"""Many texts through presidio, fast: pre-checks, batching and worker processes.

presidio's ``AnalyzerEngine.analyze`` costs about half a millisecond per call before any
recognizer runs (tokenizing, context enhancement, copying results), and every recognizer
runs on every text. Here, for a list of distinct texts (callers deduplicate):

1. each text is asked which entities it could hold at all (:meth:`PiiEngine.candidates`:
   an ``@`` for an e-mail address, five digits for a phone number...); texts that could
   hold none never reach presidio, and the others run only their candidates' recognizers;
2. texts with the same candidates are joined into one presidio call of up to
   :data:`BATCH_VALUES` values (:data:`VALUE_SEPARATOR` between them keeps each value's
   context to itself); a match that crosses a separator is discarded and the values it
   touched are analysed again alone, so batching never changes a result;
3. when there are many batches, they run in worker processes (joblib's loky backend), each
   with its own engine.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from mlaudit.pii.analyzer import Detection, EngineUnavailable, PiiEngine, get_engine
from mlaudit.pii.entities import VALUE_SEPARATOR
from mlaudit.pii.hints import ColumnHint

BATCH_VALUES: Final = 64
BATCH_CHARS: Final = 8_000
# Below this many texts, starting worker processes (each imports presidio and builds an
# engine: seconds) costs more than it saves.
PARALLEL_MIN_TEXTS: Final = 20_000
_MAX_AUTO_JOBS: Final = 8
_T = TypeVar("_T")


class PiiEngineError(RuntimeError):
    """presidio failed; the message names the exception type only, never the text."""


def guarded(call: Callable[[], _T], passing: tuple[type[Exception], ...] = ()) -> _T:
    """Run the engine; presidio's exceptions may quote the analysed text, so only the type
    survives. A missing spaCy model, an error already withheld and ``passing`` go through
    unchanged."""
    unchanged: tuple[type[Exception], ...] = (EngineUnavailable, PiiEngineError, *passing)
    try:
        return call()
    except unchanged:
        raise
    except Exception as error:  # presidio, spaCy and phonenumbers raise assorted types
        raise PiiEngineError(
            f"the personal-data engine failed ({type(error).__name__}); the message is "
            "withheld because it may quote personal data"
        ) from None


@dataclass(frozen=True)
class AnalysisSettings:
    """How texts are analysed; picklable, so worker processes get the same settings."""

    entities: frozenset[str]
    min_score: float = 0.5
    max_chars: int = 10_000
    nlp_model: str | None = None
    n_jobs: int = 0  # 0: one process per core (up to 8) past PARALLEL_MIN_TEXTS; 1: none

    def processes(self, texts: int) -> int:
        """Worker processes for ``texts`` texts: as asked, or automatically for large work."""
        if self.n_jobs > 0:
            return self.n_jobs
        if texts < PARALLEL_MIN_TEXTS:
            return 1
        return max(1, min(os.cpu_count() or 1, _MAX_AUTO_JOBS))


@dataclass(frozen=True)
class Hit:
    """One entity found in one text: its type, score, and the matched text itself.

    ``text`` is the raw personal value: it stays in memory and reaches output only through
    :mod:`mlaudit.pii.redact`.
    """

    entity: str
    score: float
    text: str


@dataclass(frozen=True)
class TextGroup:
    """Distinct texts that share a context: one column, one container in a model file."""

    hint: ColumnHint
    texts: Sequence[str]


@dataclass(frozen=True)
class _Batch:
    group: int
    hint: ColumnHint
    entities: frozenset[str]
    indices: tuple[int, ...]
    texts: tuple[str, ...]


def analyse_groups(
    groups: Sequence[TextGroup],
    settings: AnalysisSettings,
    check_budget: Callable[[], None] = lambda: None,
) -> list[list[tuple[Hit, ...]]]:
    """The hits in each text of each group, in input order. Texts are cut to
    ``settings.max_chars``. All groups share one pool of batches and worker processes."""
    engine = get_engine(settings.nlp_model)
    batches = [
        batch
        for number, group in enumerate(groups)
        for batch in _batches(engine, number, group, settings)
    ]
    hits: list[list[tuple[Hit, ...]]] = [[() for _ in group.texts] for group in groups]
    processes = settings.processes(sum(len(batch.texts) for batch in batches))
    for found in _run(batches, settings, processes):
        check_budget()
        for number, index, text_hits in found:
            hits[number][index] = text_hits
    return hits


def _batches(
    engine: PiiEngine, number: int, group: TextGroup, settings: AnalysisSettings
) -> Iterator[_Batch]:
    routed: dict[frozenset[str], list[tuple[int, str]]] = {}
    for index, text in enumerate(group.texts):
        cut = text[: settings.max_chars]
        entities = engine.candidates(cut, settings.entities, group.hint, settings.min_score)
        if entities:
            routed.setdefault(entities, []).append((index, cut))
    for entities, members in routed.items():
        chunk: list[tuple[int, str]] = []
        size = 0
        for member in members:
            if chunk and (len(chunk) >= BATCH_VALUES or size + len(member[1]) > BATCH_CHARS):
                yield _batch(number, group.hint, entities, chunk)
                chunk, size = [], 0
            chunk.append(member)
            size += len(member[1])
        if chunk:
            yield _batch(number, group.hint, entities, chunk)


def _batch(
    number: int, hint: ColumnHint, entities: frozenset[str], members: list[tuple[int, str]]
) -> _Batch:
    return _Batch(
        number, hint, entities, tuple(i for i, _ in members), tuple(t for _, t in members)
    )


def _run(
    batches: list[_Batch], settings: AnalysisSettings, processes: int
) -> Iterator[list[tuple[int, int, tuple[Hit, ...]]]]:
    if processes <= 1 or len(batches) < 2:
        for batch in batches:
            yield analyse_batches([batch], settings)
        return
    from joblib import Parallel, delayed

    # A few chunks per process: even load, and a budget check between chunks.
    step = max(1, len(batches) // (processes * 4))
    chunks = [batches[i : i + step] for i in range(0, len(batches), step)]
    # Processes by preference only: inside the isolated worker, where no new program may be
    # started, the surrounding threading backend takes over.
    parallel = Parallel(n_jobs=processes, prefer="processes", return_as="generator")
    yield from parallel(delayed(analyse_batches)(chunk, settings) for chunk in chunks)


def analyse_batches(
    batches: Sequence[_Batch], settings: AnalysisSettings
) -> list[tuple[int, int, tuple[Hit, ...]]]:
    """Run batches through this process's engine: (group, text index, hits) where found."""
    engine = get_engine(settings.nlp_model)
    found: list[tuple[int, int, tuple[Hit, ...]]] = []
    for batch in batches:
        for position, hits in enumerate(_analyse_batch(engine, batch, settings.min_score)):
            if hits:
                found.append((batch.group, batch.indices[position], hits))
    return found


def _analyse_batch(engine: PiiEngine, batch: _Batch, min_score: float) -> list[tuple[Hit, ...]]:
    texts, hint = batch.texts, batch.hint
    if len(texts) == 1:
        return [_hits(texts[0], engine.analyse(texts[0], batch.entities, hint, min_score))]
    joined = VALUE_SEPARATOR.join(texts)
    starts: list[int] = []
    position = 0
    for text in texts:
        starts.append(position)
        position += len(text) + len(VALUE_SEPARATOR)
    per_text: list[list[Detection]] = [[] for _ in texts]
    redo: set[int] = set()
    for detection in engine.analyse(joined, batch.entities, hint, min_score):
        first = bisect.bisect_right(starts, detection.start) - 1
        last = bisect.bisect_right(starts, detection.end - 1) - 1
        if first != last or detection.end > starts[first] + len(texts[first]):
            redo.update(range(first, last + 1))
            continue
        offset = starts[first]
        per_text[first].append(
            Detection(detection.entity, detection.start - offset, detection.end - offset,
                      detection.score)
        )
    for index in redo:
        per_text[index] = engine.analyse(texts[index], batch.entities, hint, min_score)
    return [_hits(text, found) for text, found in zip(texts, per_text, strict=True)]


def _hits(text: str, detections: list[Detection]) -> tuple[Hit, ...]:
    return tuple(Hit(d.entity, d.score, text[d.start : d.end]) for d in detections)
