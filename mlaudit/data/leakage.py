"""Leakage between the target, the training data and the holdout (MLA703).

A holdout score is evidence only if the holdout is data the model could not have seen and the
features are data the model will have at prediction time. Four ways that fails, each measured
here with an interval:

* a column that predicts the target on its own, nearly perfectly or as well as the whole model
  (a label copied under another name, a score computed after the outcome, an encoding fitted
  with the holdout's labels): a one-column model fitted on train, scored on the holdout;
* a column that is a transform of the target: nearly constant within each class (label plus
  noise, a relabelling) or monotone in a numeric target;
* rows of the holdout that are also in train, exactly or after normalisation;
* a column that separates the splits: an identifier whose order put every train row before
  every holdout row, or a timestamp with the training rows after the holdout's.

Everything works on plain frames and arrays, so the rule and the benchmark share it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from mlaudit.core.findings import JsonValue
from mlaudit.core.stats import Interval, bootstrap_interval, clopper_pearson
from mlaudit.subject.model_info import Task

RESAMPLES = 1000
# A regression tree of up to 32 leaves (sqrt(rows)/2: fewer on small files, which it would
# overfit) reproduces a monotone transform of a numeric target to R² > 0.98, yet cannot
# memorise an identifier.
MAX_REGRESSION_LEAVES = 32
FOLDS = 5
# Past this share of distinct values a non-numeric column is an identifier or free text.
IDENTIFIER_DISTINCT = 0.99
# Integer targets with at most this many values are classes, not quantities.
MAX_CLASSES = 20
CATEGORY_LIMIT = 50  # categories the reference model encodes; more are dropped
MISSING = "\x00missing"


class ConstantTarget(ValueError):
    """The holdout's target is one class or one value: no score can beat a constant guess."""


class Strength(enum.Enum):
    """How sure a column-level signal is: its interval clears the threshold, or only its
    estimate does (too few rows to be sure)."""

    CONFIDENT = "confident"
    ESTIMATE = "estimate only"


@dataclass(frozen=True)
class LeakageThresholds:
    near_perfect: float  # skill a single column reaches at its lower bound
    model_margin: float  # skill the full model may keep over a column that "reaches" it
    min_model_skill: float  # the full model's skill below which "reaching it" means nothing
    transform: float  # eta² / |Spearman| / relabelling share at the lower bound
    shared_rows_high: float  # share of holdout rows in train, at the lower bound, for high
    float_digits: int  # significant digits floats are rounded to before comparing rows
    split_auc: float  # separation of train from holdout by one column, at the lower bound


@dataclass(frozen=True)
class Split:
    """Train and holdout features (the columns both hold) and their targets."""

    x_train: pd.DataFrame
    y_train: np.ndarray
    x_holdout: pd.DataFrame
    y_holdout: np.ndarray
    task: Task

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.x_train.columns]


def make_split(
    train: pd.DataFrame, holdout: pd.DataFrame, target: str, task: Task | None = None
) -> Split:
    """Train and holdout on the feature columns they share; ``task`` inferred from the target
    when not known (from the model)."""
    shared = [c for c in train.columns if c in holdout.columns and c != target]
    y_train, y_holdout = train[target].to_numpy(), holdout[target].to_numpy()
    if task is None or task is Task.UNKNOWN:
        task = infer_task(np.concatenate([y_train, y_holdout]))
    return Split(
        train[shared].reset_index(drop=True), y_train,
        holdout[shared].reset_index(drop=True), y_holdout, task,
    )


def infer_task(target: np.ndarray) -> Task:
    """Classes for non-numeric targets and integers with few values; quantities otherwise."""
    values = pd.Series(target).dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return Task.CLASSIFICATION
    numbers = values.to_numpy(dtype=float)
    whole = bool(np.all(np.isclose(numbers, np.round(numbers))))
    return Task.CLASSIFICATION if whole and values.nunique() <= MAX_CLASSES else Task.REGRESSION


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class Scored:
    """Predictions on the holdout and their skill: 0 is the best constant guess (train's
    majority class, or train's mean), 1 is perfect. For classes skill is accuracy rescaled
    from the majority class's accuracy to 1; for quantities it is R²."""

    predictions: np.ndarray
    skill: float
    correct: int | None  # classification only: holdout rows predicted right

    @property
    def accuracy(self) -> float | None:
        return None if self.correct is None else self.correct / len(self.predictions)


class Scorer:
    """Scores predictions of the holdout target, and their intervals, for one split."""

    def __init__(self, split: Split, rng: np.random.Generator) -> None:
        self.split, self.rng = split, rng
        self.classification = split.task is Task.CLASSIFICATION
        self.y = split.y_holdout
        if self.classification:
            majority = pd.Series(split.y_train).mode(dropna=True)
            self.baseline = float(np.mean(self.y == majority.iloc[0])) if len(majority) else 0.0
        else:
            self.y = self.y.astype(float)

    @property
    def usable(self) -> bool:
        """False when a constant guess is already perfect (one class, or a constant target)."""
        if self.classification:
            return self.baseline < 1.0
        return bool(np.var(self.y) > 0)

    def score(self, predictions: np.ndarray) -> Scored:
        if self.classification:
            correct = int(np.sum(predictions == self.y))
            return Scored(predictions, self._skill_of_accuracy(correct / len(self.y)), correct)
        return Scored(predictions, _r2(self.y, predictions.astype(float)), None)

    def _skill_of_accuracy(self, accuracy: float) -> float:
        return (accuracy - self.baseline) / (1.0 - self.baseline)

    def skill_interval(self, scored: Scored) -> Interval:
        """Exact (Clopper-Pearson) for accuracy, rescaled; percentile bootstrap for R²."""
        if scored.correct is not None:
            exact = clopper_pearson(scored.correct, len(self.y))
            return Interval(scored.skill, self._skill_of_accuracy(exact.low),
                            self._skill_of_accuracy(exact.high))
        y, p = self.y, scored.predictions.astype(float)
        return bootstrap_interval(lambda rows: _r2(y[rows], p[rows]), len(y), self.rng,
                                  resamples=RESAMPLES)

    def gap_interval(self, full: Scored, single: Scored) -> Interval:
        """Paired bootstrap of the full model's skill minus the column's, on the same rows."""
        y = self.y
        if self.classification:
            span = 1.0 - self.baseline
            gain = ((full.predictions == y).astype(float)
                    - (single.predictions == y).astype(float)) / span
            return bootstrap_interval(lambda rows: float(gain[rows].mean()), len(y), self.rng,
                                      resamples=RESAMPLES)
        f, s = full.predictions.astype(float), single.predictions.astype(float)
        return bootstrap_interval(lambda rows: _r2(y[rows], f[rows]) - _r2(y[rows], s[rows]),
                                  len(y), self.rng, resamples=RESAMPLES)


def _r2(y: np.ndarray, predictions: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0.0:
        return 0.0
    return 1.0 - float(np.sum((y - predictions) ** 2)) / total


# --------------------------------------------------------------------------- one-column models


def _is_numeric(column: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column))


def _categories(column: pd.Series) -> pd.Series:
    """A non-numeric column as text keys, missing values a category of their own."""
    return column.astype(object).where(column.notna(), MISSING).astype(str)


def one_column_predictions(
    train: pd.Series, y_train: np.ndarray, evaluate: pd.Series, task: Task
) -> np.ndarray:
    """Predictions for ``evaluate`` from a model of one column fitted on ``train``.

    A numeric column gets a small decision tree (thresholds: a monotone or banded relation,
    missing values routed by the tree); any other column a lookup from each value to its
    majority class or mean target, with the overall one for values train never saw.
    """
    if _is_numeric(train) and _is_numeric(evaluate):
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        x_fit = train.to_numpy(dtype=float).reshape(-1, 1)
        x_eval = evaluate.to_numpy(dtype=float).reshape(-1, 1)
        if task is Task.CLASSIFICATION:
            classes = len(pd.unique(y_train))
            tree = DecisionTreeClassifier(max_leaf_nodes=max(4, 2 * classes), random_state=0)
            return np.asarray(tree.fit(x_fit, y_train).predict(x_eval))
        leaves = int(np.clip(math.sqrt(len(train)) / 2, 4, MAX_REGRESSION_LEAVES))
        regressor = DecisionTreeRegressor(max_leaf_nodes=leaves, min_samples_leaf=5,
                                          random_state=0)
        return np.asarray(regressor.fit(x_fit, y_train.astype(float)).predict(x_eval))
    keys = _categories(train)
    frame = pd.DataFrame({"key": keys.to_numpy(), "y": y_train})
    if task is Task.CLASSIFICATION:
        table = frame.groupby("key")["y"].agg(lambda v: v.mode().iloc[0])
        fallback: object = pd.Series(y_train).mode().iloc[0]
    else:
        table = frame.groupby("key")["y"].mean()
        fallback = float(np.mean(y_train.astype(float)))
    mapped = _categories(evaluate).map(table)
    return np.asarray(mapped.where(mapped.notna(), fallback).to_numpy())


def cross_validated_skill(column: pd.Series, y: np.ndarray, task: Task, seed: int) -> float:
    """The one-column model's skill in ``FOLDS``-fold cross-validation on train: a second,
    independent estimate beside the holdout's (stratified folds for classes)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    classification = task is Task.CLASSIFICATION
    counts = pd.Series(y).value_counts()
    if classification and counts.min() >= FOLDS:
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(column, y)
    else:
        folds = KFold(FOLDS, shuffle=True, random_state=seed).split(column)
    predictions = np.empty(len(y), dtype=object if classification else float)
    for fit, held in folds:
        predictions[held] = one_column_predictions(
            column.iloc[fit], y[fit], column.iloc[held], task
        )
    if classification:
        baseline = float(counts.iloc[0] / len(y))
        accuracy = float(np.mean(predictions == y))
        return (accuracy - baseline) / (1.0 - baseline) if baseline < 1.0 else 0.0
    return _r2(y.astype(float), predictions.astype(float))


def reference_predictions(split: Split, seed: int) -> np.ndarray:
    """Holdout predictions of a model fitted on train on every usable column: histogram
    gradient boosting, which takes missing values and categories (up to ``CATEGORY_LIMIT``
    values; identifiers and free text are left out) as they come."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    train, holdout = split.x_train, split.x_holdout
    numeric: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    categorical: list[str] = []
    for name in split.columns:
        a, b = train[name], holdout[name]
        if _is_numeric(a) and _is_numeric(b):
            numeric[name] = (a.to_numpy(dtype=float), b.to_numpy(dtype=float))
        elif _categories(a).nunique() <= CATEGORY_LIMIT:
            categorical.append(name)
    for name in categorical:
        codes = {k: i for i, k in enumerate(sorted(set(_categories(train[name]))))}
        numeric[name] = (
            _categories(train[name]).map(codes).to_numpy(dtype=float),
            _categories(holdout[name]).map(codes).to_numpy(dtype=float),  # unseen: NaN
        )
    if not numeric:
        raise ValueError("no column a reference model can take")
    x_train = np.column_stack([v[0] for v in numeric.values()])
    x_holdout = np.column_stack([v[1] for v in numeric.values()])
    flags = [name in categorical for name in numeric]
    # One OpenMP thread: with more threads than free cores (a busy CI runner, the model
    # worker beside other jobs) its spin-waits make the fit a hundred times slower.
    with threadpool_limits(limits=1):
        if split.task is Task.CLASSIFICATION:
            model = HistGradientBoostingClassifier(categorical_features=flags,
                                                   random_state=seed)
            return np.asarray(model.fit(x_train, split.y_train).predict(x_holdout))
        regressor = HistGradientBoostingRegressor(categorical_features=flags, random_state=seed)
        return np.asarray(
            regressor.fit(x_train, split.y_train.astype(float)).predict(x_holdout)
        )


# --------------------------------------------------------------------------- target leaks


@dataclass(frozen=True)
class ColumnLeak:
    """A column that gives the target away, with every measurement that says so."""

    column: str
    reasons: tuple[str, ...]
    strength: Strength
    evidence: dict[str, JsonValue]
    transform: bool  # a function of the target, not only a strong predictor of it


@dataclass(frozen=True)
class ColumnScore:
    column: str
    skill: float


def target_leaks(
    split: Split,
    full: np.ndarray,
    thresholds: LeakageThresholds,
    rng: np.random.Generator,
    *,
    seed: int,
    check_budget: Callable[[], None] = lambda: None,
) -> tuple[list[ColumnLeak], Scored, Interval, list[ColumnScore]]:
    """Columns that predict the target on their own or are transforms of it; also the full
    model's score on the holdout (``full``: its predictions) with its interval, and every
    column's one-column skill (for the metrics)."""
    scorer = Scorer(split, rng)
    if not scorer.usable:
        raise ConstantTarget("the holdout's target is constant: nothing to predict")
    full_scored = scorer.score(full)
    full_interval = scorer.skill_interval(full_scored)
    model_counts = full_scored.skill >= thresholds.min_model_skill
    leaks, scores = [], []
    for column in split.columns:
        check_budget()
        single = scorer.score(one_column_predictions(
            split.x_train[column], split.y_train, split.x_holdout[column], split.task
        ))
        scores.append(ColumnScore(column, single.skill))
        reasons: list[str] = []
        confident = transform = False
        evidence: dict[str, JsonValue] = {"holdout_skill": round(single.skill, 6)}
        if single.accuracy is not None:
            evidence["holdout_accuracy"] = round(single.accuracy, 6)
        if single.skill >= thresholds.near_perfect:
            interval = scorer.skill_interval(single)
            evidence["holdout_skill"] = interval.as_metric()
            reasons.append("near-perfect on its own")
            confident |= interval.low >= thresholds.near_perfect
        if model_counts and full_scored.skill - single.skill <= thresholds.model_margin:
            gap = scorer.gap_interval(full_scored, single)
            evidence["model_minus_column_skill"] = gap.as_metric()
            if gap.high <= thresholds.model_margin:
                reasons.append("as good as the full model")
                confident = True
        measured = _transform_measure(split, column, rng, thresholds.transform)
        if measured is not None:
            name, estimate, bounds = measured
            evidence[name] = bounds.as_metric() if bounds else round(estimate, 6)
            if bounds is not None:  # computed only at or over the threshold
                reasons.append(TRANSFORM_REASONS[name])
                confident |= bounds.low >= thresholds.transform
                transform = True
        ends = _pure_ends(split, column)
        # Only the bound counts here: an estimate of 1 on a handful of tied extremes is common.
        if ends is not None and ends.low >= thresholds.transform:
            evidence["end_level_purity"] = ends.as_metric()
            reasons.append("its lowest and highest values each hold one class only, as an "
                           "encoding computed with each row's own label does")
            confident = transform = True
        if reasons:
            evidence["train_cv_skill"] = round(cross_validated_skill(
                split.x_train[column], split.y_train, split.task, seed), 6)
            strength = Strength.CONFIDENT if confident else Strength.ESTIMATE
            leaks.append(ColumnLeak(column, tuple(reasons), strength, evidence, transform))
    return leaks, full_scored, full_interval, scores


TRANSFORM_REASONS = {
    "eta_squared": "nearly constant within each class (eta²)",
    "relabelling_share": "one value per class (a relabelling)",
    "abs_spearman": "monotone in the target (|Spearman|)",
}


def _transform_measure(
    split: Split, column: str, rng: np.random.Generator, threshold: float
) -> tuple[str, float, Interval | None] | None:
    """How nearly ``column`` is a function of the target, on train and holdout together:
    eta² (the share of a numeric column's variance between classes), the share of rows whose
    value is their class's own (a relabelling: one value per class, each class its own), or
    |Spearman| with a numeric target: its name, estimate, and interval when the estimate
    reaches ``threshold`` (a bound never exceeds its estimate, so under it the interval
    could not change the verdict, and the bootstrap is not run). None where none applies or
    the column is constant."""
    values = pd.concat([split.x_train[column], split.x_holdout[column]], ignore_index=True)
    target = np.concatenate([split.y_train, split.y_holdout])
    numeric = _is_numeric(values)
    if split.task is Task.CLASSIFICATION and numeric:
        present = values.notna().to_numpy()
        x = values.to_numpy(dtype=float)[present]
        _, codes = np.unique(target[present].astype(str), return_inverse=True)
        if len(x) < 3 or np.var(x) == 0:
            return None
        estimate = _eta_squared(x, codes)
        if estimate < threshold:
            return "eta_squared", estimate, None
        return "eta_squared", estimate, bootstrap_interval(
            lambda rows: _eta_squared(x[rows], codes[rows]), len(x), rng, resamples=RESAMPLES
        )
    if split.task is Task.CLASSIFICATION:
        share = _relabelling_share(split, column)
        return "relabelling_share", share.estimate, share if share.estimate >= threshold else None
    if numeric:
        frame = pd.DataFrame({"x": values.to_numpy(dtype=float), "y": target.astype(float)})
        frame = frame.dropna()
        if len(frame) < 4 or frame["x"].nunique() < 2:
            return None
        rho = abs(float(frame["x"].rank().corr(frame["y"].rank())))
        return "abs_spearman", rho, _spearman_interval(rho, len(frame)) if rho >= threshold \
            else None
    return None


def _pure_ends(split: Split, column: str) -> Interval | None:
    """How purely a numeric column's lowest and highest values separate one class from the
    rest, on train and holdout together: the highest value's rows all of its most common
    class, the lowest value's rows none of it. A target encoding fitted on rows that include
    the encoded row makes exactly this (a key whose rows are all positive encodes to 1, all
    negative to 0), while a legitimate measurement has few rows at its extremes or mixes
    classes there. The smaller of the two shares, with exact intervals on its own rows (the
    bound shrinks with few rows: a handful of tied extremes proves nothing). None for a
    column with fewer than three values, which the other measures cover."""
    if split.task is not Task.CLASSIFICATION:
        return None
    values = pd.concat([split.x_train[column], split.x_holdout[column]], ignore_index=True)
    if not _is_numeric(values) or values.nunique() < 3:
        return None
    target = pd.Series(np.concatenate([split.y_train, split.y_holdout]).astype(str))
    present = values.notna()
    x, y = values[present].to_numpy(dtype=float), target[present.to_numpy()].to_numpy()
    top, bottom = y[x == x.max()], y[x == x.min()]
    labels, counts = np.unique(top, return_counts=True)
    top_class = labels[np.argmax(counts)]
    shares = (
        clopper_pearson(int(np.sum(top == top_class)), len(top)),
        clopper_pearson(int(np.sum(bottom != top_class)), len(bottom)),
    )
    worst = min(shares, key=lambda share: share.low)
    return Interval(min(s.estimate for s in shares), worst.low, min(s.high for s in shares))


def _eta_squared(x: np.ndarray, codes: np.ndarray) -> float:
    total = float(np.sum((x - x.mean()) ** 2))
    if total == 0.0:
        return 0.0
    counts = np.bincount(codes)
    sums = np.bincount(codes, weights=x)
    present = counts > 0
    between = float(np.sum(sums[present] ** 2 / counts[present])) - len(x) * x.mean() ** 2
    return float(min(1.0, max(0.0, between / total)))


def _relabelling_share(split: Split, column: str) -> Interval:
    """Each class's most common value on train is its code (a relabelling gives each class
    its own); the share of holdout rows whose value is their class's code (exact interval).
    Codes two classes share make the relation not injective: those rows do not count."""
    train = pd.DataFrame({"v": _categories(split.x_train[column]).to_numpy(),
                          "y": split.y_train.astype(str)})
    codes = train.groupby("y")["v"].agg(lambda v: v.mode().iloc[0])
    injective = codes[~codes.duplicated(keep=False)]
    held = pd.DataFrame({"v": _categories(split.x_holdout[column]).to_numpy(),
                         "y": split.y_holdout.astype(str)})
    matches = int((held["y"].map(injective) == held["v"]).sum())
    return clopper_pearson(matches, len(held))


def _spearman_interval(rho: float, n: int) -> Interval:
    """Fisher-z interval with the Bonett and Wright (2000) standard error for Spearman's rho."""
    if rho >= 1.0 - 1e-12:
        return Interval(1.0, 1.0, 1.0)
    z = math.atanh(rho)
    spread = float(norm.ppf(0.975)) * math.sqrt((1 + rho * rho / 2) / (n - 3))
    return Interval(rho, max(0.0, math.tanh(z - spread)), math.tanh(z + spread))


# --------------------------------------------------------------------------- shared rows


@dataclass(frozen=True)
class SharedRows:
    """Holdout rows whose features are also a train row's."""

    exact: int  # value for value (an integer and the same float are one value)
    normalised: int  # after normalisation: a superset of ``exact``
    holdout_rows: int
    share: Interval  # of holdout rows, after normalisation
    train_duplicate_share: float  # train rows repeating another train row: the natural rate
    examples: tuple[int, ...]  # holdout row numbers (0-based, data rows)
    columns: int


def shared_rows(
    train: pd.DataFrame, holdout: pd.DataFrame, target: str | None, float_digits: int
) -> SharedRows:
    """Rows of the feature columns both files hold (column order ignored), hashed twice:
    as values, and normalised (text stripped, lower-cased, inner whitespace collapsed; numbers
    rounded to ``float_digits`` significant digits; numbers written as text read as numbers)."""
    columns = sorted(c for c in train.columns if c in holdout.columns and c != target)
    exact = _row_hashes(train, holdout, columns, normalise=False, digits=float_digits)
    normal = _row_hashes(train, holdout, columns, normalise=True, digits=float_digits)
    in_train_exact = np.isin(exact[1], exact[0])
    in_train = np.isin(normal[1], normal[0]) | in_train_exact
    count = int(in_train.sum())
    repeated = pd.Series(normal[0]).duplicated(keep=False).to_numpy()
    return SharedRows(
        exact=int(in_train_exact.sum()),
        normalised=count,
        holdout_rows=len(holdout),
        share=clopper_pearson(count, len(holdout)),
        train_duplicate_share=float(repeated.mean()) if len(repeated) else 0.0,
        examples=tuple(int(i) for i in np.flatnonzero(in_train)[:5]),
        columns=len(columns),
    )


def _row_hashes(
    train: pd.DataFrame, holdout: pd.DataFrame, columns: list[str], *, normalise: bool,
    digits: int,
) -> tuple[np.ndarray, np.ndarray]:
    canonical: list[tuple[pd.Series, pd.Series]] = []
    for name in columns:
        a, b = train[name], holdout[name]
        if normalise and not (_is_numeric(a) and _is_numeric(b)):
            a, b = _as_numbers(a), _as_numbers(b)
        if _is_numeric(a) and _is_numeric(b):
            x, y = a.astype(float), b.astype(float)
            if normalise:
                x, y = _round_significant(x, digits), _round_significant(y, digits)
            canonical.append((x + 0.0, y + 0.0))  # -0.0 and 0.0 are one value
        else:
            x, y = _categories(a), _categories(b)
            if normalise:
                x, y = _normal_text(x), _normal_text(y)
            canonical.append((x, y))
    hashed = []
    for side in (0, 1):
        frame = pd.DataFrame({str(i): pair[side].reset_index(drop=True)
                              for i, pair in enumerate(canonical)})
        hashed.append(pd.util.hash_pandas_object(frame, index=False).to_numpy())
    return hashed[0], hashed[1]


def _as_numbers(column: pd.Series) -> pd.Series:
    """The column as numbers when every present value reads as one, else unchanged."""
    if _is_numeric(column):
        return column
    numbers = pd.to_numeric(column.astype(str).str.strip().where(column.notna()),
                            errors="coerce")
    return numbers if numbers.notna().sum() == column.notna().sum() else column


def _round_significant(values: pd.Series, digits: int) -> pd.Series:
    x = values.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(x)))
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    scale = 10.0 ** (digits - 1 - magnitude)
    return pd.Series(np.round(x * scale) / scale, index=values.index)


def _normal_text(keys: pd.Series) -> pd.Series:
    return keys.str.strip().str.lower().str.replace(r"\s+", " ", regex=True)


# --------------------------------------------------------------------------- split separators


class SeparatorKind(enum.Enum):
    IDENTIFIER = "identifier"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class SplitSeparator:
    """A column along which train and holdout do not mix as a random split's would."""

    column: str
    kind: SeparatorKind
    # P(a holdout value > a train value) (the AUC of the column as a split classifier).
    holdout_later: Interval


def split_separators(
    train: pd.DataFrame, holdout: pd.DataFrame, target: str | None, split_auc: float
) -> tuple[list[SplitSeparator], int]:
    """Identifiers (integer or short text columns with a distinct value per row) whose order
    separates the splits, and timestamps with every train row after the holdout's (a model
    trained on its evaluation's future). A timestamp with the holdout after train is a
    deliberate temporal split: identifiers that grow with time then separate the splits the
    same way, rightly, and are not reported. Also the number of columns examined."""
    ordered: list[SplitSeparator] = []
    for name in (c for c in train.columns if c in holdout.columns and c != target):
        kind, a, b = _orderable(train[name], holdout[name])
        if kind is not None:
            ordered.append(SplitSeparator(str(name), kind, _auc_interval(a, b)))
    temporal = any(
        s.kind is SeparatorKind.TIMESTAMP and s.holdout_later.low >= split_auc for s in ordered
    )
    found = [
        s for s in ordered
        if 1.0 - s.holdout_later.high >= split_auc  # train after holdout
        or (s.kind is SeparatorKind.IDENTIFIER and not temporal
            and s.holdout_later.low >= split_auc)
    ]
    return found, len(ordered)


def _orderable(
    train: pd.Series, holdout: pd.Series
) -> tuple[SeparatorKind | None, pd.Series, pd.Series]:
    """The column's kind and its values in an order, or None for an ordinary feature."""
    both = pd.concat([train, holdout], ignore_index=True)
    present = both.dropna()
    if len(present) < max(10, 0.99 * len(both)):
        return None, train, holdout
    if pd.api.types.is_datetime64_any_dtype(both):
        return SeparatorKind.TIMESTAMP, train, holdout
    if _is_numeric(both) and not pd.api.types.is_bool_dtype(both):
        numbers = present.to_numpy(dtype=float)
        whole = bool(np.all(numbers == np.round(numbers)))
        unique = present.nunique() == len(present)
        kind = SeparatorKind.IDENTIFIER if whole and unique else None
        return kind, train, holdout
    if _is_numeric(both):
        return None, train, holdout
    text = present.astype(str)
    if text.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        times = pd.to_datetime(both, format="ISO8601", errors="coerce", utc=True)
        if times.notna().sum() >= 0.99 * len(both):
            return SeparatorKind.TIMESTAMP, times[: len(train)], times[len(train):]
    if text.nunique() >= IDENTIFIER_DISTINCT * len(both) and text.str.len().max() <= 64:
        return SeparatorKind.IDENTIFIER, train.astype(str), holdout.astype(str)
    return None, train, holdout


def _auc_interval(train: pd.Series, holdout: pd.Series) -> Interval:
    """P(holdout value > train value), ties counted half (Mann-Whitney), with the Hanley and
    McNeil (1982) normal interval; missing values are left out."""
    a, b = train.dropna(), holdout.dropna()
    ranks = pd.concat([a, b], ignore_index=True).rank(method="average").to_numpy()
    n_train, n_holdout = len(a), len(b)
    u = float(ranks[n_train:].sum()) - n_holdout * (n_holdout + 1) / 2
    auc = u / (n_train * n_holdout)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n_holdout - 1) * (q1 - auc * auc)
                + (n_train - 1) * (q2 - auc * auc)) / (n_train * n_holdout)
    spread = float(norm.ppf(0.975)) * math.sqrt(max(variance, 0.0))
    return Interval(auc, max(0.0, auc - spread), min(1.0, auc + spread))
