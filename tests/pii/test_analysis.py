"""Batching and sampling: faster, never different."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mlaudit.pii.analysis import AnalysisSettings, Hit, TextGroup, analyse_groups
from mlaudit.pii.analyzer import PiiEngine
from mlaudit.pii.columns import detection_limit
from mlaudit.pii.entities import ENTITY_NAMES
from mlaudit.pii.hints import hint_for
from tests.pii.fixtures import scan_frame

SETTINGS = AnalysisSettings(frozenset(ENTITY_NAMES))
VALUES = st.lists(
    st.lists(st.sampled_from([
        "Mary Smith", "mary@example.com", "phone (212) 555-0143", "4111 1111 1111 1111",
        "ssn 536-22-8726", "notes", "Jones", "qzxv", "192.168.12.4", "-", "John", "\t",
    ]), min_size=1, max_size=4).map(" ".join),
    min_size=1, max_size=80,
)


def _alone(engine: PiiEngine, text: str, column: str) -> tuple[Hit, ...]:
    hint = hint_for(column)
    found = engine.analyse(text, engine.candidates(text, SETTINGS.entities, hint, 0.5), hint, 0.5)
    return tuple(Hit(d.entity, d.score, text[d.start : d.end]) for d in found)


@settings(max_examples=25, deadline=None)
@given(values=VALUES, column=st.sampled_from(["notes", "first_name", "phone"]))
def test_batched_analysis_equals_one_call_per_value(
    engine: PiiEngine, values: list[str], column: str
) -> None:
    (batched,) = analyse_groups([TextGroup(hint_for(column), values)], SETTINGS)
    assert batched == [_alone(engine, value, column) for value in values]


def test_a_sampled_column_reports_an_interval_that_covers_the_truth(engine: PiiEngine) -> None:
    rng = np.random.default_rng(0)
    emails = [f"user{i}@example.com" for i in range(3000)]
    column = np.where(rng.random(3000) < 0.3, emails, "no address here")
    frame = pd.DataFrame({"contact": column})
    true_share = float(np.mean(column != "no address here"))
    covered = 0
    for seed in range(20):  # a 95 % interval: about one sample in twenty misses
        (scanned,) = scan_frame(frame, SETTINGS, sample_rows=500, seed=seed)
        assert scanned.sampled
        assert scanned.analysed_rows == 500
        assert scanned.scan is not None
        (stats,) = scanned.scan.entities
        assert stats.share.low < stats.share.estimate < stats.share.high
        covered += stats.share.low <= true_share <= stats.share.high
    assert covered >= 17
    assert 0.005 < detection_limit(500) < 0.007  # about 3 / n


def test_every_distinct_value_is_analysed_once_and_counted_per_row(engine: PiiEngine) -> None:
    frame = pd.DataFrame({"email": ["ann@example.com"] * 900 + ["bob@example.org"] * 100})
    (scanned,) = scan_frame(frame, SETTINGS, sample_rows=0)
    assert scanned.scan is not None
    assert scanned.scan.values == 2
    (stats,) = scanned.scan.entities
    assert (stats.occurrences, stats.share.estimate) == (1000, 1.0)
    assert stats.examples[0] == "ann@example.com"
