"""What each column of a data file holds: its kind, missing values, range and categories.

Counts that a finding states as a fact (missing values, the range, values outside the training
range, the categories, values that are not numbers) are exact over every row of the file: they
are accumulated chunk by chunk (:mod:`mlaudit.data.stream` reads a file the loader sampled again,
by Parquet row group or CSV chunk), so memory holds one chunk, never the file. Only the share
of the most frequent value, which decides "near constant" and nothing exact, is read from a
uniform sample of the rows in memory: counting every distinct float of a million-row column
costs a hash table as large as the column.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


class Kind(enum.Enum):
    """How a column's values compare: as numbers, as categories, or as times."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"


def column_kind(series: pd.Series) -> Kind:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return Kind.BOOLEAN
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return Kind.DATETIME
    if pd.api.types.is_numeric_dtype(dtype):
        return Kind.NUMERIC
    return Kind.CATEGORICAL


def as_text(value: object) -> str:
    """A category as the checks compare it (``3`` read from CSV and ``"3"`` are one)."""
    return str(value)


@dataclass(frozen=True)
class ColumnProfile:
    """One column of one data file.

    ``categories`` counts each distinct value (as text) of a categorical or boolean column;
    None when the column has more than the profile's cap of distinct values (an identifier,
    free text), where "a category never seen" means nothing. ``numeric_values`` and
    ``text_values`` count the values of a categorical column that do and do not read as
    numbers (both non-zero: mixed types). Profiled against the training data's profile,
    ``below`` and ``above`` count values outside its range, and ``unseen`` the categories it
    never had (when this column has too many to keep, but training had few). ``top_share`` is
    the share of the most frequent non-missing value among ``top_rows`` sampled rows.
    """

    name: str
    kind: Kind
    rows: int
    missing: int
    minimum: float | None = None
    maximum: float | None = None
    categories: Mapping[str, int] | None = None
    numeric_values: int = 0
    text_values: int = 0
    below: int = 0
    above: int = 0
    unseen: Mapping[str, int] | None = None
    top_share: float = 0.0
    top_rows: int = 0

    @property
    def present(self) -> int:
        return self.rows - self.missing

    @property
    def identifier_like(self) -> bool:
        """Text with too many distinct values to be categories (see :func:`too_many_values`)."""
        if self.kind is not Kind.CATEGORICAL:
            return False
        return self.categories is None or too_many_values(len(self.categories), self.present)

    @property
    def constant(self) -> bool:
        """One distinct non-missing value (exact: from the range or the category counts)."""
        if self.present == 0:
            return False
        if self.kind is Kind.NUMERIC:
            return self.minimum == self.maximum
        return self.categories is not None and len(self.categories) == 1


def too_many_values(distinct: int, present: int) -> bool:
    """Whether a text column is identifiers, names or free text rather than categories: more
    than 50 distinct values and more than one for every ten rows. There a value never seen
    before is the rule, and digits among letters (a phone number) are no parsing error."""
    return distinct > max(50, present // 10)


@dataclass
class _Column:
    """One column's counts so far."""

    name: str
    kind: Kind
    max_categories: int
    trained: ColumnProfile | None
    rows: int = 0
    missing: int = 0
    minimum: float | None = None
    maximum: float | None = None
    counts: Counter[str] | None = field(default_factory=Counter)
    numeric_values: int = 0
    text_values: int = 0
    below: int = 0
    above: int = 0
    unseen: Counter[str] = field(default_factory=Counter)

    def add(self, series: pd.Series) -> None:
        self.rows += len(series)
        self.missing += int(series.isna().sum())
        kind = column_kind(series)
        if kind is not self.kind and Kind.CATEGORICAL in (kind, self.kind):
            # A CSV chunk read as text where others were numbers: the column is text, and the
            # categories of the chunks read as numbers are gone; say so rather than guess.
            self.kind, self.counts = Kind.CATEGORICAL, None
        if kind is Kind.NUMERIC:
            self._add_numbers(series)
        elif kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
            self._add_categories(series, kind)

    def _add_numbers(self, series: pd.Series) -> None:
        # One float array and NaN-aware reductions: no copy of the present values per check.
        values = series.to_numpy(dtype=float, na_value=np.nan)
        present = int(values.size - np.count_nonzero(np.isnan(values)))
        if not present:
            return
        if self.kind is Kind.CATEGORICAL:  # numbers in a column that is text elsewhere
            self.numeric_values += present
            return
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)
        trained = self.trained
        if trained is not None and trained.minimum is not None and trained.maximum is not None:
            self.below += int(np.count_nonzero(values < trained.minimum))
            self.above += int(np.count_nonzero(values > trained.maximum))

    def _add_categories(self, series: pd.Series, kind: Kind) -> None:
        counts = series.value_counts(dropna=True)
        counts = counts[counts > 0]  # a categorical dtype lists its unused categories too
        if kind is Kind.CATEGORICAL:
            parsed = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce")
            is_number = parsed.notna().to_numpy()
            self.numeric_values += int(counts.to_numpy()[is_number].sum())
            self.text_values += int(counts.to_numpy()[~is_number].sum())
        texts = {as_text(value): int(count) for value, count in counts.items()}
        if self.counts is not None:
            self.counts.update(texts)
            if len(self.counts) > self.max_categories:
                self.counts = None
        seen = self.trained.categories if self.trained is not None else None
        if seen is not None:
            self.unseen.update({value: n for value, n in texts.items() if value not in seen})

    def profile(self, top: tuple[float, int]) -> ColumnProfile:
        top_share, top_rows = top
        return ColumnProfile(
            self.name, self.kind, self.rows, self.missing, self.minimum, self.maximum,
            dict(self.counts) if self.counts is not None else None,
            self.numeric_values, self.text_values, self.below, self.above,
            dict(self.unseen) if self.trained is not None else None, top_share, top_rows,
        )


def profile_chunks(
    chunks: Iterable[pd.DataFrame],
    columns: Sequence[str],
    *,
    max_categories: int,
    sample: pd.DataFrame,
    reference: Mapping[str, ColumnProfile] | None = None,
) -> dict[str, ColumnProfile]:
    """``columns`` over every row of ``chunks`` (exact), compared as it goes with the training
    data's ``reference`` profiles; ``sample``, a uniform sample of the same file, gives the
    most frequent value's share."""
    accumulated: dict[str, _Column] = {}
    for chunk in chunks:
        for name in columns:
            column = accumulated.get(name)
            if column is None:
                trained = reference.get(name) if reference is not None else None
                column = accumulated[name] = _Column(
                    name, column_kind(chunk[name]), max_categories, trained
                )
            column.add(chunk[name])
    return {name: column.profile(_top(sample[name])) for name, column in accumulated.items()}


def _top(sample: pd.Series) -> tuple[float, int]:
    present = sample.dropna()
    if present.empty:
        return 0.0, 0
    counts = present.value_counts(sort=True)
    return float(counts.iloc[0] / len(present)), len(present)


def uniform_sample(rows: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``min(rows, size)`` rows drawn without replacement (all rows when
    there are no more than ``size``): sorted, so reading them walks memory in order."""
    if rows <= size:
        return np.arange(rows)
    return np.sort(rng.choice(rows, size=size, replace=False))
