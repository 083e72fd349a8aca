"""From distinct values and how often each occurs to per-entity statistics.

Callers deduplicate (a column's ``value_counts``, a container's distinct strings), so a value
repeated in 10,000 rows is analysed once and counted 10,000 times.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from mlaudit.core.findings import Confidence, JsonValue
from mlaudit.core.stats import Interval, clopper_pearson
from mlaudit.pii.analysis import AnalysisSettings, Hit, TextGroup, analyse_groups
from mlaudit.pii.entities import entity as entity_info
from mlaudit.pii.hints import ColumnHint
from mlaudit.pii.redact import Redactor

EXAMPLES: Final = 3
_HIGH_SCORE: Final = 0.85
_MEDIUM_SCORE: Final = 0.6


@dataclass(frozen=True)
class EntityStats:
    """One entity type in one set of values.

    ``occurrences`` counts rows (or strings) holding the entity; ``share`` is its proportion,
    exact when every row was analysed, a Clopper-Pearson 95 % interval over a sample.
    ``examples`` are raw values, for :mod:`mlaudit.pii.redact` only.
    """

    entity: str
    occurrences: int
    share: Interval
    mean_score: float
    distinct: int
    examples: tuple[str, ...]

    @property
    def confidence(self) -> Confidence:
        if self.mean_score >= _HIGH_SCORE:
            return Confidence.HIGH
        return Confidence.MEDIUM if self.mean_score >= _MEDIUM_SCORE else Confidence.LOW

    def evidence(self, redactor: Redactor) -> dict[str, JsonValue]:
        return {
            "entity": self.entity,
            "label": entity_info(self.entity).label,
            "occurrences": self.occurrences,
            "distinct_values": self.distinct,
            "share": round(self.share.estimate, 6),
            "share_low": round(self.share.low, 6),
            "share_high": round(self.share.high, 6),
            "mean_score": round(self.mean_score, 4),
            "examples": [redactor.evidence(self.entity, text) for text in self.examples],
        }


@dataclass(frozen=True)
class ValueScan:
    values: int
    occurrences: int
    entities: tuple[EntityStats, ...]


@dataclass(frozen=True)
class Values:
    """Distinct texts sharing a context, each standing for ``counts`` occurrences.

    ``sampled``: the occurrences are a random sample of a larger whole, so shares come with
    an interval.
    """

    texts: Sequence[str]
    counts: Sequence[int]
    hint: ColumnHint
    sampled: bool = False


def scan_groups(
    groups: Sequence[Values],
    settings: AnalysisSettings,
    *,
    keep: Callable[[Hit], bool] = lambda _: True,
    check_budget: Callable[[], None] = lambda: None,
) -> list[ValueScan]:
    """Analyse every group's texts (in one pool of batches) and aggregate each group."""
    found = analyse_groups(
        [TextGroup(group.hint, group.texts) for group in groups], settings, check_budget
    )
    return [aggregate(group, hits, keep) for group, hits in zip(groups, found, strict=True)]


def aggregate(
    group: Values, found: Sequence[tuple[Hit, ...]], keep: Callable[[Hit], bool]
) -> ValueScan:
    """Per-entity statistics of ``group`` from the hits in each of its texts, in order."""
    occurrences: Counter[str] = Counter()
    distinct: Counter[str] = Counter()
    score_sums: dict[str, float] = {}
    examples: dict[str, Counter[str]] = {}
    for hits, count in zip(found, group.counts, strict=True):
        best: dict[str, float] = {}
        for hit in hits:
            if keep(hit):
                best[hit.entity] = max(best.get(hit.entity, 0.0), hit.score)
                examples.setdefault(hit.entity, Counter())[hit.text] += count
        for name, score in best.items():
            occurrences[name] += count
            distinct[name] += 1
            score_sums[name] = score_sums.get(name, 0.0) + score * count
    total = sum(group.counts)
    stats = tuple(
        EntityStats(
            name,
            occurrences[name],
            _share(occurrences[name], total, sampled=group.sampled),
            score_sums[name] / occurrences[name],
            distinct[name],
            tuple(text for text, _ in examples[name].most_common(EXAMPLES)),
        )
        for name in sorted(occurrences, key=lambda n: (-occurrences[n], n))
    )
    return ValueScan(len(group.texts), total, stats)


def _share(occurrences: int, total: int, *, sampled: bool) -> Interval:
    if sampled:
        return clopper_pearson(occurrences, total)
    estimate = occurrences / total
    return Interval(estimate, estimate, estimate)
