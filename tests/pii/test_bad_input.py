"""Bad input: binary columns, mixed encodings, huge cells, empty tables. Never a crash."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlaudit.pii.analysis import AnalysisSettings
from mlaudit.pii.analyzer import PiiEngine
from mlaudit.pii.columns import ColumnScan
from mlaudit.pii.entities import ENTITY_NAMES
from tests.pii.fixtures import scan_frame

SETTINGS = AnalysisSettings(frozenset(ENTITY_NAMES), max_chars=2_000)


def _scan(frame: pd.DataFrame) -> dict[str, ColumnScan]:
    scans = scan_frame(frame, SETTINGS, sample_rows=0)
    return {s.column: s for s in scans}


def _entities(scanned: ColumnScan) -> set[str]:
    return {s.entity for s in scanned.scan.entities} if scanned.scan else set()


def test_binary_and_non_text_columns_are_skipped_with_a_reason(engine: PiiEngine) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "blob": [rng.bytes(64) for _ in range(20)],
        "flag": [True, False] * 10,
        "score": rng.random(20),
        "count": np.arange(20),
        "empty": [None] * 20,
        "when": pd.date_range("2024-01-01", periods=20),
    })
    reasons = {name: s.skipped for name, s in _scan(frame).items()}
    assert reasons == {
        "blob": "binary", "flag": "boolean", "score": "numeric", "count": "numeric",
        "empty": "no values", "when": "date, not a birth date",
    }


def test_mixed_encodings_and_identifiers_stored_as_numbers_are_read(engine: PiiEngine) -> None:
    frame = pd.DataFrame({
        "contact": ["josé@example.com".encode(), "zoë@example.org".encode("latin-1"),
                    "plain@example.net", 42, None],
        "phone_number": [2125550143, 4155552671, 2025550173, 3125550123, 6175550100],
    })
    scans = _scan(frame)
    assert _entities(scans["contact"]) == {"EMAIL_ADDRESS"}
    assert scans["contact"].rows == 4
    assert _entities(scans["phone_number"]) == {"PHONE_NUMBER"}


def test_very_long_cells_are_cut_and_counted(engine: PiiEngine) -> None:
    long_cell = "lorem ipsum " * 50_000 + "hidden@example.com"
    frame = pd.DataFrame({"text": ["short@example.com", long_cell]})
    scanned = _scan(frame)["text"]
    assert scanned.truncated == 1
    assert scanned.scan is not None
    assert scanned.scan.entities[0].occurrences == 1


def test_an_empty_table_and_blank_cells_are_nothing_to_analyse(engine: PiiEngine) -> None:
    assert scan_frame(pd.DataFrame(), SETTINGS, sample_rows=0) == []
    scanned = _scan(pd.DataFrame({"notes": ["", "   ", None]}))["notes"]
    assert scanned.skipped == "no values"
