"""What a fitted scikit-learn pipeline does to each input column before its model sees it.

MLA702 asks whether the audit data will make the model measure something other than what runs
in production. A missing value is no such problem for a column the pipeline imputes, nor for
a model that splits on missingness itself (histogram gradient boosting, trees and forests
since scikit-learn 1.4); a category the training data never had is no problem for an encoder
told to ``handle_unknown="ignore"``. This module reads the fitted objects (their public
attributes and scikit-learn's estimator tags) to tell those cases apart; it never calls them.

Anything it cannot read (a custom transformer, a callable column selector, a format that is
not scikit-learn) counts as "not known to be handled", so a finding is kept, never dropped
on a guess.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

_IMPUTERS = frozenset({"SimpleImputer", "IterativeImputer", "KNNImputer"})
_ENCODERS = frozenset({"OneHotEncoder", "OrdinalEncoder", "TargetEncoder"})


@dataclass(frozen=True)
class Encoding:
    """A categorical encoder's view of one input column."""

    encoder: str
    handle_unknown: str
    categories: tuple[object, ...]


@dataclass(frozen=True)
class ColumnHandling:
    """Per input column: whether missing values are handled, and by what; its encoder."""

    missing_handled_by: dict[str, str] = field(default_factory=dict)
    encodings: dict[str, Encoding] = field(default_factory=dict)


def read_pipeline(estimator: object, columns: Sequence[str]) -> ColumnHandling:
    """How ``estimator`` (fitted) treats each of ``columns``, its input columns in order."""
    handling = ColumnHandling()
    _walk(estimator, list(columns), handling)
    return handling


def _walk(step: object, columns: list[str], handling: ColumnHandling) -> bool:
    """Record what ``step`` does to ``columns``; True when it handles missing values in all
    of them, so later steps never see one."""
    name = type(step).__name__
    if name in _IMPUTERS:
        handling.missing_handled_by.update({c: name for c in columns})
        return True
    if name in _ENCODERS:
        _record_encodings(step, columns, handling)
        return False
    if name == "Pipeline":
        for _, inner in getattr(step, "steps", []):
            if inner in (None, "passthrough"):
                continue
            if _walk(inner, columns, handling):
                return True
        return False
    if name == "ColumnTransformer":
        return _walk_columns(step, columns, handling)
    if hasattr(step, "predict") and _allows_nan(step):
        handling.missing_handled_by.update(
            {c: f"{name} (splits on missing values)" for c in columns}
        )
        return True
    return False


def _walk_columns(transformer: object, columns: list[str], handling: ColumnHandling) -> bool:
    """A ColumnTransformer: each branch handles its own columns; dropped ones need nothing."""
    handled_all = True
    for _, branch, selected in getattr(transformer, "transformers_", []):
        picked = _select(columns, selected)
        if picked is None:
            handled_all = False
            continue
        if isinstance(branch, str):
            if branch == "drop":
                handling.missing_handled_by.update({c: "dropped by the pipeline" for c in picked})
            else:  # passthrough: a later step must handle them
                handled_all = False
            continue
        handled_all = _walk(branch, picked, handling) and handled_all
    return handled_all


def _select(columns: list[str], selected: Any) -> list[str] | None:
    """The column names a ColumnTransformer branch takes; None if it cannot be read."""
    if callable(selected):
        return None
    if isinstance(selected, str | int):
        selected = [selected]
    if isinstance(selected, slice):
        return columns[selected]
    values = np.asarray(selected)
    if values.size == 0:
        return []
    if values.dtype == bool and len(values) == len(columns):
        return [c for c, keep in zip(columns, values.tolist(), strict=True) if keep]
    if np.issubdtype(values.dtype, np.integer):
        return [columns[i] for i in values.tolist() if -len(columns) <= i < len(columns)]
    names = [str(v) for v in values.tolist()]
    return names if all(n in columns for n in names) else None


def _record_encodings(encoder: object, columns: list[str], handling: ColumnHandling) -> None:
    categories = getattr(encoder, "categories_", None)
    if categories is None or len(categories) != len(columns):
        return
    # TargetEncoder has no handle_unknown: it always encodes an unseen category as the mean.
    unknown = str(getattr(encoder, "handle_unknown", "target mean"))
    for column, seen in zip(columns, categories, strict=True):
        handling.encodings[column] = Encoding(
            type(encoder).__name__, unknown, tuple(np.asarray(seen).tolist())
        )


def _allows_nan(estimator: object) -> bool:
    """scikit-learn's own declaration that the estimator accepts NaN in its input."""
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(estimator).input_tags.allow_nan)
    except Exception:  # not a scikit-learn estimator, or tags it cannot compute
        return False


def unseen(values: Sequence[Any], encoding: Encoding) -> Iterator[object]:
    """The distinct non-missing values the encoder did not see when it was fitted."""
    seen = {str(c) for c in encoding.categories}
    for value in dict.fromkeys(values):
        if not pd.isna(value) and str(value) not in seen:
            yield value
