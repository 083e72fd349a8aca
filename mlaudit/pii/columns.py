"""Personal data in the columns of a table: which columns to read, and how.

Text and categorical columns are read; so are integer columns wide enough to be an
identifier (a phone or card number stored as a number), and date columns named as birth
dates. Other numbers, booleans and binary blobs are skipped with the reason recorded. Bytes
are decoded as UTF-8, or Latin-1 where that fails (a column of mixed encodings still reads).

A column with more than ``sample_rows`` rows is read on a uniform random sample of that many
rows (seeded): each entity's share then comes with a 95 % interval, and an entity in more
than :func:`detection_limit` of the rows would have been met with 95 % probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from mlaudit.pii.hints import ColumnHint, hint_for
from mlaudit.pii.scan import Values, ValueScan

# Integers with at least this many digits may be identifiers (phone, card, account numbers).
_IDENTIFIER_DIGITS: Final = 7
_BINARY_SHARE: Final = 0.3
_TEXT_WORDS: Final = 5
_CONTROL: Final = frozenset(chr(c) for c in range(32)) - {"\t", "\n", "\r"}


@dataclass(frozen=True)
class ColumnScan:
    """The outcome for one column: a scan, or the reason it was skipped."""

    column: str
    hint: ColumnHint
    rows: int
    analysed_rows: int = 0
    kind: str = "skipped"
    truncated: int = 0
    scan: ValueScan | None = None
    skipped: str | None = None

    @property
    def sampled(self) -> bool:
        return self.analysed_rows < self.rows


def detection_limit(rows: int, confidence: float = 0.95) -> float:
    """The smallest share an entity can have and still be met in ``rows`` random rows with
    probability ``confidence`` (``1 - (1 - confidence) ** (1 / rows)``; about 3 / rows)."""
    return 1.0 - (1.0 - confidence) ** (1.0 / rows) if rows else 1.0


@dataclass(frozen=True)
class PreparedColumn:
    """A column ready for analysis: its distinct values (of its sample), each with its count."""

    column: str
    hint: ColumnHint
    rows: int
    analysed_rows: int
    values: Values
    truncated: int

    def scanned(self, scan: ValueScan) -> ColumnScan:
        return ColumnScan(
            self.column, self.hint, self.rows, self.analysed_rows, _kind(self.values.texts),
            self.truncated, scan,
        )


def prepare_column(
    series: pd.Series, max_chars: int, sample_rows: int, rng: np.random.Generator
) -> ColumnScan | PreparedColumn:
    """The column's values to analyse (a seeded sample of ``sample_rows`` rows, 0: all), or
    the reason it is skipped."""
    name = str(series.name)
    hint = hint_for(name)
    present = series.dropna()
    texts, skipped = _as_texts(present, hint)
    if texts is None or texts.empty:
        return ColumnScan(name, hint, len(present), skipped=skipped or "no values")
    rows = len(texts)
    if 0 < sample_rows < rows:
        texts = texts.iloc[np.sort(rng.choice(rows, size=sample_rows, replace=False))]
    counts = texts.value_counts(sort=False)
    values = [str(value) for value in counts.index]
    truncated = sum(c for v, c in zip(values, counts.tolist(), strict=True) if len(v) > max_chars)
    return PreparedColumn(
        name, hint, rows, len(texts),
        Values(values, counts.tolist(), hint, sampled=len(texts) < rows), truncated,
    )


def _as_texts(values: pd.Series, hint: ColumnHint) -> tuple[pd.Series | None, str | None]:
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return None, "boolean"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return (values.astype(str), None) if hint.birth_date else (None, "date, not a birth date")
    if pd.api.types.is_integer_dtype(dtype):
        widest = int(values.abs().max()) if len(values) else 0
        if widest < 10 ** (_IDENTIFIER_DIGITS - 1):
            return None, "numeric"
        return values.astype(str), None
    if pd.api.types.is_numeric_dtype(dtype):
        return None, "numeric"
    texts = values.map(_text)
    binary = texts.map(_looks_binary)
    if binary.mean() > _BINARY_SHARE:
        return None, "binary"
    return texts[~binary & (texts.str.strip() != "")], None


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def _looks_binary(text: str) -> bool:
    sample = text[:512]
    return bool(sample) and sum(c in _CONTROL for c in sample) > len(sample) // 10


def _kind(values: Sequence[str]) -> str:
    """"text" when a typical value is a sentence, "categorical" otherwise."""
    words = sorted(len(v.split()) for v in values)
    return "text" if words and words[len(words) // 2] >= _TEXT_WORDS else "categorical"
