"""The input space an attacker may move in: which features change, how far, in what steps.

Attacks work in a scaled space over the *mutable* features: each is measured in units of its
robust spread in the audit data (the interquartile range over 1.349, which is one standard
deviation for normal data; the standard deviation when the IQR is 0, as for mostly-zero
features), so one ε means "this many typical deviations" for
every feature, whatever its outliers. A threat model may give some features their own ε
(``feature_epsilon``): their unit is then stretched by their ε over the global one, so the
attacks' single ε realises every feature's own budget. Points are realised before they are
kept or reported: clipped to the observed range and rounded where the feature only holds
integers. Features that are configured immutable or
categorical, that are not numeric, or that are constant in the data never change, because a
robustness number on inputs that cannot exist is worthless.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlaudit.core.errors import ConfigError

# The interquartile range of a normal distribution in standard deviations: dividing by it
# makes the robust spread read as a standard deviation.
NORMAL_IQR = 1.349


@dataclass(frozen=True)
class FrozenFeature:
    column: str
    reason: str


@dataclass(frozen=True, eq=False)
class FeatureSpace:
    """Scaling and realisation for the model's input columns.

    ``mutable`` indexes ``columns``; ``lower``/``upper``/``integer``/``scale``/``spread`` are
    per mutable feature: a unit step moves a feature by ``scale`` (its robust spread times its
    own ε over the global one); ``spread`` names which spread was used.
    """

    columns: tuple[str, ...]
    mutable: tuple[int, ...]
    lower: np.ndarray
    upper: np.ndarray
    integer: np.ndarray
    frozen: tuple[FrozenFeature, ...]
    scale: np.ndarray
    spread: tuple[str, ...]

    @property
    def extent(self) -> np.ndarray:
        """The observed range of each mutable feature in units: points live in [0, extent]."""
        return np.asarray((self.upper - self.lower) / self.scale)

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
        relative_epsilon: Mapping[str, float] | None = None,
    ) -> FeatureSpace:
        """The space spanned by ``frames`` (same columns, the model's inputs).

        ``relative_epsilon`` maps feature names or glob patterns (``pixel_*``) to a feature's
        own ε as a multiple of the global one; the first matching pattern wins.
        """
        columns = tuple(str(c) for c in frames[0].columns)
        unknown = sorted((set(immutable) | set(categorical)) - set(columns))
        if unknown:
            raise ConfigError(
                f"immutable/categorical features not among the model's inputs: {', '.join(unknown)}"
            )
        relative = dict(relative_epsilon or {})
        unmatched = sorted(p for p in relative if not fnmatch.filter(columns, p))
        if unmatched:
            raise ConfigError(
                f"feature_epsilon names no input of the model: {', '.join(unmatched)}"
            )
        mutable: list[int] = []
        lower: list[float] = []
        upper: list[float] = []
        integer: list[bool] = []
        scale: list[float] = []
        spread: list[str] = []
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
            finite = numbers[np.isfinite(numbers)]
            own = next((r for p, r in relative.items() if fnmatch.fnmatchcase(column, p)), 1.0)
            if not own > 0:
                frozen.append(FrozenFeature(column, "ε of 0 (configured)"))
                continue
            kind, size = robust_spread(finite)
            mutable.append(index)
            lower.append(low)
            upper.append(high)
            integer.append(bool(np.all(finite == np.round(finite))))
            scale.append(size * own)
            spread.append(kind)
        return cls(
            columns,
            tuple(mutable),
            np.array(lower),
            np.array(upper),
            np.array(integer, dtype=bool),
            tuple(frozen),
            np.array(scale),
            tuple(spread),
        )

    def to_unit(self, frame: pd.DataFrame) -> np.ndarray:
        """The mutable features of ``frame`` as points of the scaled space."""
        raw = frame.iloc[:, list(self.mutable)].to_numpy(dtype=np.float64)
        return np.asarray((raw - self.lower) / self.scale)

    def clip(self, unit: np.ndarray) -> np.ndarray:
        """Unit points clipped to the observed ranges."""
        return np.asarray(np.clip(unit, 0.0, self.extent))

    def to_raw(self, unit: np.ndarray) -> np.ndarray:
        """Feature values of unit points, clipped to the observed range (not rounded)."""
        return np.asarray(self.lower + self.clip(unit) * self.scale)

    def realise(self, unit: np.ndarray) -> np.ndarray:
        """The nearest point that can exist: inside the observed range, integers rounded."""
        raw = self.to_raw(unit)
        raw[:, self.integer] = np.round(raw[:, self.integer])
        return np.asarray((raw - self.lower) / self.scale)

    def below_step(self, epsilon: float) -> tuple[str, ...]:
        """Integer features whose one step is larger than ``epsilon`` units.

        A realised point changes such a feature by a whole step or not at all, so no
        perturbation of L∞ size ``epsilon`` can change it: the audit at ε does not test it.
        """
        steps = 1.0 / self.scale
        return tuple(
            c
            for c, i, step in zip(self.mutable_columns, self.integer, steps, strict=True)
            if i and epsilon < step
        )

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
            "unit": {
                c: {"size": round(float(size), 6), "spread": kind}
                for c, size, kind in zip(self.mutable_columns, self.scale, self.spread, strict=True)
            },
        }


def robust_spread(values: np.ndarray) -> tuple[str, float]:
    """A feature's typical deviation, robust to outliers: IQR/1.349, else the std.

    The IQR is 0 for a feature that is mostly one value (pixels, counts of rare events); its
    standard deviation still says how far it varies, and is positive for any feature that is
    not constant, so no further fallback is needed. ``values`` are finite, not constant.
    """
    q1, q3 = np.percentile(values, [25, 75])
    if q3 > q1:
        return "iqr", float(q3 - q1) / NORMAL_IQR
    return "std", float(np.std(values))


def project(delta: np.ndarray, epsilon: float, norm: str) -> np.ndarray:
    """The nearest perturbations of size at most ``epsilon`` (see :func:`distance`)."""
    if norm == "linf":
        return np.asarray(np.clip(delta, -epsilon, epsilon))
    size = distance(delta, norm)
    shrink = np.where(size > epsilon, epsilon / np.maximum(size, 1e-300), 1.0)
    return np.asarray(delta * shrink[:, None])


def within(
    delta: np.ndarray,
    epsilon: float,
    norm: str,
    dtype: np.dtype[np.floating],
    magnitude: float = 1.0,
) -> np.ndarray:
    """Whether perturbations are of size at most ``epsilon``, up to floating-point rounding.

    An attack computing in float32 lands a few units in the last place past ε (about 4e-8 at
    ε = 0.05); that is the arithmetic, not a larger perturbation, so sizes are compared with a
    relative tolerance of a few ulps of the attack's precision, plus the rounding of the
    float64 round trip through raw values for points of size ``magnitude``.
    """
    relative = 16.0 * float(np.finfo(dtype).eps)
    absolute = 64.0 * float(np.finfo(np.float64).eps) * max(magnitude, 1.0)
    return np.asarray(distance(delta, norm) <= epsilon * (1.0 + relative) + absolute)


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
