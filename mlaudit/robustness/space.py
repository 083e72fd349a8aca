"""The input space an attacker may move in: which features change, how far, in what steps.

Attacks work in a unit cube over the *mutable* features, each scaled by the range seen in the
audit data, so one ε means "this share of the feature's observed range" for every feature.
Points are realised before they are kept or reported: clipped to the observed range and
rounded where the feature only holds integers. Features that are configured immutable or
categorical, that are not numeric, or that are constant in the data never change, because a
robustness number on inputs that cannot exist is worthless.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlaudit.errors import ConfigError


@dataclass(frozen=True)
class FrozenFeature:
    column: str
    reason: str


@dataclass(frozen=True, eq=False)
class FeatureSpace:
    """Scaling and realisation for the model's input columns.

    ``mutable`` indexes ``columns``; ``lower``/``upper``/``integer`` are per mutable feature.
    """

    columns: tuple[str, ...]
    mutable: tuple[int, ...]
    lower: np.ndarray
    upper: np.ndarray
    integer: np.ndarray
    frozen: tuple[FrozenFeature, ...]

    @property
    def dimensions(self) -> int:
        return len(self.mutable)

    @property
    def mutable_columns(self) -> tuple[str, ...]:
        return tuple(self.columns[i] for i in self.mutable)

    @classmethod
    def from_data(
        cls,
        frames: Sequence[pd.DataFrame],
        *,
        immutable: Collection[str] = (),
        categorical: Collection[str] = (),
    ) -> FeatureSpace:
        """The space spanned by ``frames`` (same columns, the model's inputs)."""
        columns = tuple(str(c) for c in frames[0].columns)
        unknown = sorted((set(immutable) | set(categorical)) - set(columns))
        if unknown:
            raise ConfigError(
                f"immutable/categorical features not among the model's inputs: {', '.join(unknown)}"
            )
        mutable: list[int] = []
        lower: list[float] = []
        upper: list[float] = []
        integer: list[bool] = []
        frozen: list[FrozenFeature] = []
        for index, column in enumerate(columns):
            values = pd.concat([frame[column] for frame in frames], ignore_index=True)
            reason = _frozen_reason(column, values, immutable, categorical)
            if reason is not None:
                frozen.append(FrozenFeature(column, reason))
                continue
            numbers = values.to_numpy(dtype=np.float64)
            low, high = float(np.nanmin(numbers)), float(np.nanmax(numbers))
            if not high > low:
                frozen.append(FrozenFeature(column, "constant in the data"))
                continue
            mutable.append(index)
            lower.append(low)
            upper.append(high)
            finite = numbers[np.isfinite(numbers)]
            integer.append(bool(np.all(finite == np.round(finite))))
        return cls(
            columns,
            tuple(mutable),
            np.array(lower),
            np.array(upper),
            np.array(integer, dtype=bool),
            tuple(frozen),
        )

    def to_unit(self, frame: pd.DataFrame) -> np.ndarray:
        """The mutable features of ``frame`` as points of the unit cube."""
        raw = frame.iloc[:, list(self.mutable)].to_numpy(dtype=np.float64)
        return np.asarray((raw - self.lower) / (self.upper - self.lower))

    def to_raw(self, unit: np.ndarray) -> np.ndarray:
        """Feature values of unit points, clipped to the observed range (not rounded)."""
        return np.asarray(self.lower + np.clip(unit, 0.0, 1.0) * (self.upper - self.lower))

    def realise(self, unit: np.ndarray) -> np.ndarray:
        """The nearest point that can exist: inside the observed range, integers rounded."""
        raw = self.to_raw(unit)
        raw[:, self.integer] = np.round(raw[:, self.integer])
        return np.asarray((raw - self.lower) / (self.upper - self.lower))

    def frame(self, base: pd.DataFrame, rows: np.ndarray, unit: np.ndarray) -> pd.DataFrame:
        """Rows ``rows`` of ``base`` with their mutable features replaced by ``unit`` points."""
        raw = self.to_raw(unit)
        position = {column_index: j for j, column_index in enumerate(self.mutable)}
        data: dict[str, np.ndarray] = {}
        for index, column in enumerate(self.columns):
            original = base[column].to_numpy()
            if index in position:
                values = raw[:, position[index]]
                data[column] = (
                    np.round(values).astype(original.dtype)
                    if np.issubdtype(original.dtype, np.integer)
                    else values.astype(original.dtype, copy=False)
                )
            else:
                data[column] = original[rows]
        return pd.DataFrame(data, columns=list(self.columns))

    def describe(self) -> dict[str, object]:
        return {
            "mutable": list(self.mutable_columns),
            "integer": [c for c, i in zip(self.mutable_columns, self.integer, strict=True) if i],
            "frozen": {f.column: f.reason for f in self.frozen},
        }


def _frozen_reason(
    column: str, values: pd.Series, immutable: Collection[str], categorical: Collection[str]
) -> str | None:
    if column in immutable:
        return "immutable (configured)"
    if column in categorical:
        return "categorical (configured)"
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if not pd.api.types.is_numeric_dtype(values):
        return "not numeric"
    return None


def distance(delta: np.ndarray, norm: str) -> np.ndarray:
    """Per-row size of unit-space perturbations.

    L∞ is the largest share of a feature's range changed; L2 is the root-mean-square share,
    so that one ε grid reads the same for both norms and for any number of features.
    """
    if norm == "linf":
        return np.max(np.abs(delta), axis=1) if delta.shape[1] else np.zeros(len(delta))
    return np.sqrt(np.mean(delta * delta, axis=1)) if delta.shape[1] else np.zeros(len(delta))
