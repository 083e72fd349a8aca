"""Distribution drift of one column between reference and current data (MLA704).

Per column: the population stability index (PSI) over bins taken from the reference (deciles
of a number, the most frequent categories of a category, plus a bin for missing values and
one for categories the reference never had), with a bootstrap interval, and a two-sample test
(Kolmogorov-Smirnov for numbers, chi-squared on the bin counts for categories; numbers with
missing values take both, Bonferroni-corrected, since KS sees only the values). A column
drifts when the test rejects after the Benjamini-Hochberg correction over all columns *and*
the PSI reaches the first band: on a million rows the test alone rejects differences no one
would act on, and on a hundred rows the PSI alone is noise.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mlaudit.core.stats import Interval, percentile_interval
from mlaudit.data.profile import Kind, as_text, column_kind, too_many_values

# Proportions are floored at this before the logarithm: the usual PSI convention, which keeps
# an empty bin from making the index infinite.
_FLOOR = 1e-4
_BOOTSTRAP_DRAWS = 200
MISSING_BIN = "missing"
OTHER_BIN = "other"


@dataclass(frozen=True)
class Binned:
    """Counts of reference and current values per bin, with the bins' labels."""

    labels: tuple[str, ...]
    reference: np.ndarray
    current: np.ndarray

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        return _shares(self.reference), _shares(self.current)


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: Kind
    test: str  # "ks", "chi2", or "ks+chi2" (numbers with missing values)
    psi: Interval
    statistic: float
    p_value: float
    binned: Binned


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=-1, keepdims=True)
    return np.asarray(counts / np.maximum(total, 1), dtype=float)


def psi(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The PSI of bin shares (the last axis); several pairs at once for the bootstrap."""
    ref = np.maximum(reference, _FLOOR)
    cur = np.maximum(current, _FLOOR)
    return np.asarray(np.sum((cur - ref) * np.log(cur / ref), axis=-1), dtype=float)


def psi_interval(binned: Binned, rng: np.random.Generator) -> Interval:
    """The PSI with a multinomial bootstrap interval: both samples redrawn from their own bin
    shares, which is the resampling of rows reduced to what the PSI reads."""
    ref_shares, cur_shares = binned.shares()
    estimate = float(psi(ref_shares, cur_shares))
    ref_n, cur_n = int(binned.reference.sum()), int(binned.current.sum())
    if ref_n == 0 or cur_n == 0:
        return Interval(estimate, estimate, estimate)
    ref_draws = rng.multinomial(ref_n, ref_shares, size=_BOOTSTRAP_DRAWS)
    cur_draws = rng.multinomial(cur_n, cur_shares, size=_BOOTSTRAP_DRAWS)
    return percentile_interval(estimate, psi(_shares(ref_draws), _shares(cur_draws)))


def numeric_bins(reference: np.ndarray, current: np.ndarray, bins: int) -> Binned:
    """Quantile bins of the reference (ties merge bins). ``reference`` and ``current`` are
    the present values, sorted once for this and the KS test; the caller adds the bin for
    missing values."""
    edges = (
        np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
        if reference.size else np.array([])
    )

    def counts(values: np.ndarray) -> np.ndarray:
        # Bin i holds the values with exactly i edges at or below them; in sorted values its
        # bounds are where each edge would be inserted.
        bounds = np.searchsorted(values, edges, side="left")
        return np.diff(np.concatenate([[0], bounds, [values.size]]))

    labels = [f"< {edges[0]:.4g}"] if len(edges) else ["all"]
    labels += [f"[{low:.4g}, {high:.4g})" for low, high in itertools.pairwise(edges)]
    if len(edges):
        labels.append(f">= {edges[-1]:.4g}")
    return Binned(tuple(labels), counts(reference), counts(current))


def categorical_bins(reference: pd.Series, current: pd.Series, bins: int) -> Binned:
    """The reference's most frequent categories, one bin for the rest (and for categories the
    reference never had), and one for missing values."""
    ref_counts, cur_counts = _text_counts(reference), _text_counts(current)
    kept = list(ref_counts.index[: max(bins - 1, 1)])
    labels = [str(k) for k in kept]
    ref_kept = ref_counts.reindex(kept, fill_value=0).to_numpy()
    cur_kept = cur_counts.reindex(kept, fill_value=0).to_numpy()
    ref_row = [*ref_kept, int(ref_counts.sum() - ref_kept.sum())]
    cur_row = [*cur_kept, int(cur_counts.sum() - cur_kept.sum())]
    binned = Binned((*labels, OTHER_BIN), np.array(ref_row), np.array(cur_row))
    return _with_missing(binned, int(reference.isna().sum()), int(current.isna().sum()))


def _text_counts(series: pd.Series) -> pd.Series:
    """Rows per category as text, most frequent first: counted before the values become text,
    so only the distinct values are converted."""
    counts = series.value_counts(dropna=True)
    counts = counts[counts > 0]  # a categorical dtype lists its unused categories too
    counts.index = counts.index.map(as_text)
    return counts.groupby(level=0, sort=False).sum().sort_values(ascending=False, kind="stable")


def _with_missing(binned: Binned, ref_missing: int, cur_missing: int) -> Binned:
    if not (ref_missing or cur_missing):
        return binned
    return Binned(
        (*binned.labels, MISSING_BIN),
        np.append(binned.reference, ref_missing).astype(np.int64),
        np.append(binned.current, cur_missing).astype(np.int64),
    )


def column_drift(
    reference: pd.Series,
    current: pd.Series,
    *,
    bins: int,
    rng: np.random.Generator,
    kind: Kind | None = None,
) -> ColumnDrift | None:
    """The drift of one column between two samples; None when neither holds a value."""
    kind = kind or column_kind(reference)
    numeric = kind is Kind.NUMERIC and pd.api.types.is_numeric_dtype(current.dtype)
    if numeric:
        ref_all = reference.to_numpy(dtype=float, na_value=np.nan)
        cur_all = current.to_numpy(dtype=float, na_value=np.nan)
        ref, cur = np.sort(ref_all[~np.isnan(ref_all)]), np.sort(cur_all[~np.isnan(cur_all)])
        if not (ref.size and cur.size):
            return None
        binned = _with_missing(
            numeric_bins(ref, cur, bins), ref_all.size - ref.size, cur_all.size - cur.size
        )
        result = stats.ks_2samp(ref, cur)
        test, statistic, p_value = "ks", float(result.statistic), float(result.pvalue)
        if binned.labels[-1] == MISSING_BIN:
            # KS sees only the values; a change in how many are missing is the binned test's
            # to see. The smaller p-value of the two, doubled (Bonferroni over both).
            _, missing_p = _chi2(binned)
            test, p_value = "ks+chi2", min(1.0, 2 * min(p_value, missing_p))
    else:
        binned = categorical_bins(reference, current, bins)
        test, statistic, p_value = "chi2", *_chi2(binned)
        kind = Kind.CATEGORICAL if kind is Kind.NUMERIC else kind
    if not (binned.reference.sum() and binned.current.sum()):
        return None
    return ColumnDrift(
        str(reference.name), kind, test, psi_interval(binned, rng), statistic, p_value, binned
    )


def identifier_like(series: pd.Series) -> bool:
    """Identifiers, names or free text (:func:`~mlaudit.data.profile.too_many_values`): their
    values never recur, so their "drift" says nothing about the population."""
    if column_kind(series) is not Kind.CATEGORICAL:
        return False
    present = series.dropna()
    return too_many_values(present.nunique(), len(present))


def _chi2(binned: Binned) -> tuple[float, float]:
    table = np.vstack([binned.reference, binned.current])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def adjusted_p_values(p_values: Sequence[float], correction: str) -> list[float]:
    """P-values corrected for testing every column: Benjamini-Hochberg (the false-discovery
    rate), Bonferroni (the family-wise error), or none."""
    if not p_values:
        return []
    values = np.asarray(p_values, dtype=float)
    if correction == "benjamini-hochberg":
        return [float(p) for p in stats.false_discovery_control(values, method="bh")]
    if correction == "bonferroni":
        return [float(p) for p in np.minimum(values * len(values), 1.0)]
    return [float(p) for p in values]
