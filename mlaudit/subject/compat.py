"""Can this data be fed to this model, and what about it will skew every behavioural result?

Problems that make prediction impossible are fatal (exit 2 before any report); the others
become MLA702 findings. A column is judged with the pipeline in view
(:mod:`mlaudit.subject.preprocessing`): missing values the pipeline imputes, or its model splits on,
are not a problem, and text in a column an encoder takes is a category, not a parsing error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from mlaudit.core.errors import InputError
from mlaudit.core.findings import JsonValue, Severity
from mlaudit.subject.data import Dataset
from mlaudit.subject.model_info import InputKind, LoadedModel, json_safe_classes
from mlaudit.subject.preprocessing import ColumnHandling, Encoding, read_pipeline, unseen

_SHOWN = 10


@dataclass(frozen=True)
class CompatibilityIssue:
    key: str
    severity: Severity
    title: str
    message: str
    column: str | None = None
    evidence: dict[str, JsonValue] = field(default_factory=dict)


def listed(names: Sequence[str], limit: int = _SHOWN) -> str:
    """The first ``limit`` names, comma-separated, then how many more there are."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class QueryFailure(InputError):
    """The model raised when queried with the data: the rules that query it cannot run, but
    what was found without querying it still stands."""


def with_text_column(
    model: LoadedModel, datasets: Sequence[Dataset], named: str | None
) -> LoadedModel:
    """A text model with the data column it reads named: ``named`` (``--text-column``), else
    the one non-target text column of the data; an input error asking for ``--text-column``
    when the data has none or several. Other models, and data-less runs, are left as they are.
    """
    if model.input_kind is not InputKind.TEXT or model.feature_names is not None:
        return model
    if named is None and datasets:
        candidates = text_columns(datasets)
        if len(candidates) != 1:
            found = (
                f"{len(candidates)} text columns ({listed(candidates)})" if candidates
                else "no text column"
            )
            raise InputError(
                f"the model takes text and the data has {found}: name the column that holds "
                "it with --text-column (text_column in the configuration)"
            )
        named = candidates[0]
    return model if named is None else replace(model, feature_names=(named,))


def sole_text_column(datasets: Sequence[Dataset]) -> str | None:
    """The data's one non-target text column, or None when it has none or several."""
    candidates = text_columns(datasets) if datasets else []
    return candidates[0] if len(candidates) == 1 else None


def text_columns(datasets: Sequence[Dataset]) -> list[str]:
    """Non-target columns that hold strings in every data file."""
    return [
        str(c) for c in datasets[0].features.columns
        if all(c in d.features.columns and _holds_text(d.features[c]) for d in datasets)
    ]


def _holds_text(column: pd.Series) -> bool:
    """Strings only (judged on the first thousand present values: a column of another kind
    shows it long before)."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    present = column.dropna().head(1000)
    return bool(len(present)) and bool(present.map(lambda v: isinstance(v, str)).all())


def require_usable(dataset: Dataset, model: LoadedModel) -> None:
    """Raise :class:`InputError` when the model cannot be queried with ``dataset`` at all:
    :class:`QueryFailure` when it has the columns the model takes but the model raises on a
    few of its rows (naming the pipeline step that failed and what to check)."""
    features = dataset.features
    if model.feature_names is not None:
        found = model.data_columns(features.columns)
        missing = [name for name in model.feature_names if name not in found]
        if missing:
            hint = (
                "; name the column that holds the text with --text-column"
                if model.input_kind is InputKind.TEXT else ""
            )
            raise InputError(
                f"{dataset.role} file {dataset.path} lacks {len(missing)} column(s) the model "
                f"needs: {listed(missing)}{hint}"
            )
    elif model.n_features is not None and features.shape[1] != model.n_features:
        raise InputError(
            f"the model takes {model.n_features} features but {dataset.role} file "
            f"{dataset.path} has {features.shape[1]} (excluding the target); prediction is "
            "impossible"
        )
    probe = features.head(min(len(features), 8))
    try:
        model.predict(probe)
    except Exception as error:  # the model's own code may raise anything
        fix = (
            "check that --text-column names the column of raw text the model was trained on"
            if model.input_kind is InputKind.TEXT
            else "check that the data has the columns, types and encodings the model was "
            "trained on"
        )
        raise QueryFailure(
            f"the model cannot predict on {dataset.role} file {dataset.path}: "
            f"{_failure(model, model.select_features(probe), error)}; {fix}"
        ) from None


def _failure(model: LoadedModel, probe: pd.DataFrame, error: Exception) -> str:
    """``error``, with the scikit-learn Pipeline step that raised it named: each step is
    replayed on the probe rows (only on failure, so it costs nothing when the model works)."""
    steps = getattr(model.estimator, "steps", None)
    if model.estimator_input is None or not isinstance(steps, list) or not steps:
        return _one_line(error)
    data = model.estimator_input(probe)
    failed_name, failed_step, cause = steps[-1][0], steps[-1][1], error
    for name, step in steps[:-1]:
        if step is None or step == "passthrough":
            continue
        try:
            data = step.transform(data)
        except Exception as inner:  # the step's own code may raise anything
            failed_name, failed_step, cause = name, step, inner
            break
    return (
        f"Pipeline step {failed_name!r} ({type(failed_step).__name__}) failed on the data: "
        f"{_one_line(cause)}"
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first_line}"


def inspect(dataset: Dataset, model: LoadedModel) -> list[CompatibilityIssue]:
    """Non-fatal mismatches between ``dataset`` and ``model``, in a stable order."""
    issues: list[CompatibilityIssue] = []
    features = dataset.features
    used = model.select_features(features)
    if model.feature_names is not None:
        taken = set(used.columns)
        unused = [c for c in features.columns if c not in taken]
        if unused:
            issues.append(
                CompatibilityIssue(
                    key="unused-columns",
                    severity=Severity.INFO,
                    title="Columns the model does not use",
                    message=f"{len(unused)} column(s) in {dataset.path} are not model inputs "
                    f"and were ignored: {listed(unused)}",
                    evidence={"columns": list(unused)},
                )
            )
        in_data = [c for c in features.columns if c in taken]
        if in_data != list(used.columns):
            issues.append(
                CompatibilityIssue(
                    key="column-order",
                    severity=Severity.INFO,
                    title="Columns in a different order than the model's",
                    message="columns were reordered to the model's order before querying it",
                )
            )
    handling = read_pipeline(model.estimator, [str(c) for c in used.columns])
    issues.extend(_missing_values(used, handling))
    issues.extend(_mixed_types(used, handling))
    issues.extend(_unseen_categories(used, handling))
    issues.extend(_unknown_labels(dataset, model))
    return issues


def _missing_values(frame: pd.DataFrame, handling: ColumnHandling) -> list[CompatibilityIssue]:
    """Missing values in columns that nothing in the pipeline is known to handle.

    Low at any share: a model that cannot take NaN fails on those rows (and the rules that
    query them say so), one that can has chosen how to; the share is in the evidence.
    """
    issues = []
    for column in frame.columns:
        missing = int(frame[column].isna().sum())
        if missing and str(column) not in handling.missing_handled_by:
            share = missing / len(frame)
            issues.append(
                CompatibilityIssue(
                    key=f"missing:{column}",
                    severity=Severity.LOW,
                    title="Missing values in a model input",
                    message=f"column {column!r} is missing in {missing} of {len(frame)} rows "
                    f"({share:.1%}) and the model is not known to impute it or to accept "
                    "missing values; results on those rows depend on how it treats NaN",
                    column=str(column),
                    evidence={"missing_rows": missing, "share": round(share, 4)},
                )
            )
    return issues


def _mixed_types(frame: pd.DataFrame, handling: ColumnHandling) -> list[CompatibilityIssue]:
    """Columns that are mostly numbers with some text: usually a parsing or export error,
    unless an encoder takes the column, which makes every value a category."""
    issues = []
    for column in frame.columns:
        if str(column) in handling.encodings:
            continue
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        present = series.dropna()
        numeric = pd.to_numeric(present, errors="coerce")
        parsed = int(numeric.notna().sum())
        if present.empty or parsed == 0 or parsed == len(present):
            continue
        bad = int(len(present) - parsed)
        issues.append(
            CompatibilityIssue(
                key=f"non-numeric:{column}",
                severity=Severity.MEDIUM,
                title="Non-numeric values in a numeric model input",
                message=f"column {column!r} is numeric in {parsed} rows but not in {bad}",
                column=str(column),
                evidence={"non_numeric_rows": bad},
            )
        )
    return issues


def _unseen_categories(
    frame: pd.DataFrame, handling: ColumnHandling
) -> list[CompatibilityIssue]:
    """Categories the fitted encoder never saw: a failure only if it was told to raise."""
    issues = []
    for column, encoding in handling.encodings.items():
        values = frame[column].tolist()
        new = list(unseen(values, encoding))
        if new:
            issues.append(_unseen_issue(column, encoding, new, values))
    return issues


def _unseen_issue(
    column: str, encoding: Encoding, new: list[object], values: list[object]
) -> CompatibilityIssue:
    known = {str(v) for v in new}
    rows = sum(str(v) in known for v in values)
    raises = encoding.handle_unknown == "error"
    consequence = (
        "it was fitted with handle_unknown='error', so the model raises on those rows"
        if raises
        else f"it encodes them as unknown (handle_unknown={encoding.handle_unknown!r}), as "
        "it would in production"
    )
    return CompatibilityIssue(
        key=f"unseen-categories:{column}",
        severity=Severity.MEDIUM if raises else Severity.INFO,
        title="Categories the model's encoder never saw",
        message=f"{rows} of {len(values)} rows of column {column!r} hold categories the "
        f"pipeline's {encoding.encoder} was not fitted on ({listed([str(v) for v in new])}); "
        + consequence,
        column=column,
        evidence={
            "rows": rows,
            "categories": [str(v) for v in new[:_SHOWN]],
            "handle_unknown": encoding.handle_unknown,
        },
    )


def _unknown_labels(dataset: Dataset, model: LoadedModel) -> list[CompatibilityIssue]:
    labels = dataset.labels
    if labels is None or model.classes is None:
        return []
    known = {str(c) for c in model.classes}
    values = labels.dropna().unique()
    unknown = sorted({str(v) for v in values} - known)
    if not unknown:
        return []
    affected = int(labels.astype(str).isin(unknown).sum())
    return [
        CompatibilityIssue(
            key="unknown-labels",
            severity=Severity.HIGH,
            title="Target labels the model cannot predict",
            message=f"{affected} of {len(labels)} rows of {dataset.target!r} hold labels the "
            f"model does not know ({listed(unknown)}); the model's classes are "
            f"{listed([str(c) for c in model.classes])}. Every accuracy-based result on this "
            "data is wrong",
            column=dataset.target,
            evidence={
                "unknown_labels": list(unknown[:_SHOWN]),
                "model_classes": json_safe_classes(model.classes),  # type: ignore[dict-item]
                "rows": affected,
            },
        )
    ]
