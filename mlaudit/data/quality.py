"""Data-quality checks of one data file against the training data's profile (MLA701).

Each check counts rows exactly and states the share with its Wilson interval; the severity
follows from the share's lower bound and the rule's bands, so a handful of bad rows in a small
file is not graded as if the whole population looked like them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.core.stats import wilson
from mlaudit.data.profile import ColumnProfile, Kind

_SHOWN = 10
_GRADES = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)


@dataclass(frozen=True)
class QualityThresholds:
    """The rule's options: the share bands that make a share low, medium and high (below the
    first, a share is recorded in the metrics but is no finding), and the share of one value
    that makes a column near-constant."""

    share_bands: Sequence[float]
    near_constant_share: float


@dataclass(frozen=True)
class QualityIssue:
    check: str  # missing | out-of-range | unseen-categories | constant | near-constant | ...
    column: str
    severity: Severity
    title: str
    message: str
    evidence: dict[str, JsonValue] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.check}:{self.column}"


def graded(rows: int, total: int, bands: Sequence[float]) -> tuple[Severity | None, JsonValue]:
    """The severity of ``rows`` of ``total`` by the lower bound of its Wilson interval (None
    under the first band), and the interval as the metrics record it."""
    interval = wilson(rows, total)
    return band_grade(interval.low, bands), interval.as_metric()


def band_grade(value: float, bands: Sequence[float]) -> Severity | None:
    """The severity of ``value`` by ``bands`` (low, medium, high): the last band it reaches,
    None under the first."""
    severity = None
    for band, grade in zip(bands, _GRADES, strict=False):
        if value >= band:
            severity = grade
    return severity


def _counted(
    rows: int, total: int, bands: Sequence[float]
) -> tuple[Severity | None, dict[str, JsonValue]]:
    severity, interval = graded(rows, total, bands)
    return severity, {"rows": rows, "of": total, "share": interval}


def check_file(
    profiles: Mapping[str, ColumnProfile],
    reference: Mapping[str, ColumnProfile] | None,
    *,
    missing_handled: Mapping[str, str],
    thresholds: QualityThresholds,
) -> Iterator[QualityIssue]:
    """Every issue of one file: its own (missing values, constant columns, mixed types) and,
    with the training data's ``reference`` profiles (``profiles`` were profiled against them),
    how it departs from them (columns gone, kinds changed, values outside the training range,
    categories never seen)."""
    if reference is not None:
        yield from _missing_columns(profiles, reference)
    for name, profile in profiles.items():
        trained = reference.get(name) if reference is not None else None
        yield from _missing_values(profile, missing_handled.get(name), thresholds)
        yield from _constant(profile, trained, thresholds)
        # New values and stray digits are what identifiers and free text hold.
        if not profile.identifier_like:
            yield from _mixed_types(profile, thresholds)
        if trained is None:
            continue
        if trained.kind is not profile.kind:
            yield _kind_change(profile, trained)
            continue
        if not profile.identifier_like:
            yield from _out_of_range(profile, trained, thresholds)
            yield from _unseen_categories(profile, thresholds)


def _missing_columns(
    profiles: Mapping[str, ColumnProfile], reference: Mapping[str, ColumnProfile]
) -> Iterator[QualityIssue]:
    gone = [name for name in reference if name not in profiles]
    if gone:
        yield QualityIssue(
            "missing-columns", "*", Severity.MEDIUM, "Columns of the training data are missing",
            f"{len(gone)} column(s) of the training data are not in this file: {_listed(gone)}",
            {"columns": list[JsonValue](gone[:_SHOWN]), "count": len(gone)},
        )


def _missing_values(
    profile: ColumnProfile, handled_by: str | None, thresholds: QualityThresholds
) -> Iterator[QualityIssue]:
    if profile.missing == 0 or handled_by is not None:
        return
    severity, evidence = _counted(profile.missing, profile.rows, thresholds.share_bands)
    if severity is None:
        return
    yield QualityIssue(
        "missing", profile.name, severity, "Missing values the pipeline does not handle",
        f"column {profile.name!r} is missing in {profile.missing} of {profile.rows} rows "
        f"({profile.missing / profile.rows:.2%}) and nothing in the model's pipeline is known "
        "to impute them or to accept them",
        evidence,
    )


def _constant(
    profile: ColumnProfile, trained: ColumnProfile | None, thresholds: QualityThresholds
) -> Iterator[QualityIssue]:
    """A constant column carries nothing; one that became constant is a broken feed."""
    limit = thresholds.near_constant_share
    if profile.constant:
        was_varied = trained is not None and not trained.constant
        yield QualityIssue(
            "constant", profile.name, Severity.MEDIUM if was_varied else Severity.LOW,
            "Constant column",
            f"column {profile.name!r} holds a single value in all {profile.present} non-missing "
            "rows" + ("; it varied in the training data" if was_varied else ""),
            {"rows": profile.present, "varied_in_training": was_varied},
        )
    elif profile.top_share >= limit and profile.top_rows:
        was_varied = trained is not None and trained.top_share < limit
        yield QualityIssue(
            "near-constant", profile.name, Severity.LOW if was_varied else Severity.INFO,
            "Near-constant column",
            f"one value of column {profile.name!r} fills {profile.top_share:.2%} of its "
            f"non-missing rows (the threshold is {limit:.2%})"
            + ("; the training data was more varied" if was_varied else ""),
            {"top_share": round(profile.top_share, 6), "measured_on_rows": profile.top_rows,
             "exact": profile.kind is not Kind.NUMERIC or profile.top_rows == profile.present,
             "varied_in_training": was_varied},
        )


def _mixed_types(profile: ColumnProfile, thresholds: QualityThresholds) -> Iterator[QualityIssue]:
    """Numbers and text in one column: a parsing or export error, graded by the minority."""
    numbers, text = profile.numeric_values, profile.text_values
    if not (numbers and text):
        return
    minority = min(numbers, text)
    severity, evidence = _counted(minority, numbers + text, thresholds.share_bands)
    yield QualityIssue(
        "mixed-types", profile.name, severity or Severity.INFO, "Numbers and text in one column",
        f"column {profile.name!r} holds {numbers} values that read as numbers and {text} that "
        "do not",
        {**evidence, "numeric_values": numbers, "text_values": text},
    )


def _kind_change(profile: ColumnProfile, trained: ColumnProfile) -> QualityIssue:
    return QualityIssue(
        "type-change", profile.name, Severity.MEDIUM, "Column type changed since training",
        f"column {profile.name!r} is {profile.kind.value} here but was {trained.kind.value} in "
        "the training data",
        {"kind": profile.kind.value, "training_kind": trained.kind.value},
    )


def _out_of_range(
    profile: ColumnProfile, trained: ColumnProfile, thresholds: QualityThresholds
) -> Iterator[QualityIssue]:
    low, high = trained.minimum, trained.maximum
    below, above = profile.below, profile.above
    if low is None or high is None or not below + above:
        return
    outside = below + above
    severity, evidence = _counted(outside, profile.present, thresholds.share_bands)
    if severity is None:
        return
    yield QualityIssue(
        "out-of-range", profile.name, severity, "Values outside the training range",
        f"{outside} of {profile.present} values of column {profile.name!r} lie outside the "
        f"training range [{low:g}, {high:g}] ({below} below, {above} above; here "
        f"[{profile.minimum:g}, {profile.maximum:g}])",
        {**evidence, "below": below, "above": above, "training_range": [low, high],
         "range": [profile.minimum, profile.maximum]},
    )


def _unseen_categories(
    profile: ColumnProfile, thresholds: QualityThresholds
) -> Iterator[QualityIssue]:
    new = profile.unseen
    if profile.kind is not Kind.CATEGORICAL or not new:
        return
    rows = sum(new.values())
    severity, evidence = _counted(rows, profile.present, thresholds.share_bands)
    ordered = sorted(new, key=lambda value: (-new[value], value))
    yield QualityIssue(
        "unseen-categories", profile.name, severity or Severity.INFO,
        "Categories never seen in training",
        f"{rows} of {profile.present} values of column {profile.name!r} are categories the "
        f"training data never had ({_listed(ordered)})",
        {**evidence, "categories": list[JsonValue](ordered[:_SHOWN]), "distinct": len(new)},
    )


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
