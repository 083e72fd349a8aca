"""The data a membership attack is measured on: members (``--train``), non-members (``--holdout``).

Everything here guards the validity of the measurement rather than the model:

* Train and holdout must have the same schema for the model's inputs. A column parsed as text
  in one file and as numbers in the other makes non-members trivially different, and every
  attack would "succeed" on the encoding instead of the model.
* A holdout row that also occurs in train (same model inputs and label) is a member, whatever
  the file says. It is excluded from the non-members and counted; left in, it would be scored as
  a non-member that the attack "wrongly" calls a member. On data with few distinct values
  (small integer or categorical columns) two people can share a row by chance; how many
  shared rows chance predicts is estimated from the duplicates within each file
  (:func:`chance_overlap`), so MLA301 calls an overlap a leak only beyond that.
* The evaluation set is balanced (as many members as non-members, sampled with the run seed),
  so AUC and TPR/FPR are not driven by the class ratio, and the same seed gives the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlaudit.core.findings import JsonValue
from mlaudit.core.stats import derived_rng
from mlaudit.subject.build import Subject
from mlaudit.subject.data import Dataset
from mlaudit.subject.model_info import LoadedModel

MIN_ROWS = 20


class InvalidEvaluation(Exception):
    """The supplied data cannot measure membership; the message says why."""


def privacy_rng(seed: int, purpose: str) -> np.random.Generator:
    """A generator from the run seed and a purpose, shared by every privacy rule.

    The rules are independent, but MLA301, MLA302 and MLA304 must measure the same evaluation
    rows (and the same reference models) for their numbers to be comparable; ``ctx.rng()`` is
    salted with the rule id, so they derive their generators from the seed here instead.
    """
    return derived_rng(seed, purpose)


@dataclass(frozen=True, eq=False)
class MembershipData:
    """Every usable train and holdout row (the pool), and the balanced evaluation rows in it."""

    pool: pd.DataFrame
    pool_classes: np.ndarray
    pool_member: np.ndarray
    classes: tuple[object, ...]
    targets: np.ndarray
    overlap_rows: int
    unknown_label_rows: int
    expected_overlap: float = 0.0

    @property
    def features(self) -> pd.DataFrame:
        """Model inputs of the evaluation rows."""
        return self.pool.iloc[self.targets]

    @property
    def member(self) -> np.ndarray:
        return np.asarray(self.pool_member[self.targets], dtype=bool)

    @property
    def labels(self) -> np.ndarray:
        """Class index (into ``classes``) of each evaluation row."""
        return np.asarray(self.pool_classes[self.targets], dtype=np.int64)

    def metrics(self) -> dict[str, JsonValue]:
        member = self.member
        return {
            "members": int(member.sum()),
            "non_members": int((~member).sum()),
            "overlapping_rows_excluded": self.overlap_rows,
            "overlapping_rows_expected_by_chance": round(self.expected_overlap, 2),
            "unknown_label_rows_excluded": self.unknown_label_rows,
        }


def membership_data(
    subject: Subject, model: LoadedModel, seed: int, max_rows: int
) -> MembershipData:
    """Check and assemble the evaluation data; raise :class:`InvalidEvaluation` if unusable."""
    train, holdout = subject.dataset("train"), subject.dataset("holdout")
    if train is None or holdout is None or train.target is None or holdout.target is None:
        raise InvalidEvaluation("needs --train, --holdout and --target")
    train_x = model.select_features(train.features)
    holdout_x = model.select_features(holdout.features)
    differences = schema_differences(train_x, holdout_x)
    if differences:
        raise InvalidEvaluation(
            "train and holdout differ in schema, so members and non-members would differ in "
            "encoding rather than in membership: " + "; ".join(differences)
        )
    classes = model_classes(model, train)
    assert classes is not None  # train has a target
    train_codes, holdout_codes = _class_codes(train, classes), _class_codes(holdout, classes)
    train_hashes, holdout_hashes = _row_hashes(train_x, train), _row_hashes(holdout_x, holdout)
    overlap = holdout_hashes.isin(set(train_hashes.tolist())).to_numpy()
    keep_train, keep_holdout = train_codes >= 0, (holdout_codes >= 0) & ~overlap
    pool = pd.concat([train_x[keep_train], holdout_x[keep_holdout]], ignore_index=True)
    member = np.concatenate([np.ones(keep_train.sum(), bool), np.zeros(keep_holdout.sum(), bool)])
    per_side = min(int(member.sum()), int((~member).sum()), max_rows)
    if per_side < MIN_ROWS:
        raise InvalidEvaluation(
            f"only {per_side} member/non-member pairs remain after excluding "
            f"{int(overlap.sum())} holdout rows that also occur in train and rows with labels "
            f"the model does not know; at least {MIN_ROWS} are needed"
        )
    rng = privacy_rng(seed, "evaluation-rows")
    targets = np.concatenate(
        [
            rng.choice(np.flatnonzero(member), per_side, replace=False),
            rng.choice(np.flatnonzero(~member), per_side, replace=False),
        ]
    )
    return MembershipData(
        pool=pool,
        pool_classes=np.concatenate([train_codes[keep_train], holdout_codes[keep_holdout]]),
        pool_member=member,
        classes=classes,
        targets=targets,
        overlap_rows=int(overlap.sum()),
        unknown_label_rows=int((train_codes < 0).sum() + (holdout_codes < 0).sum()),
        expected_overlap=chance_overlap(train_hashes, holdout_hashes),
    )


def chance_overlap(train: pd.Series, holdout: pd.Series) -> float:
    """Holdout rows expected to equal some train row by chance, were the two files independent
    draws from one population.

    The chance that two independent rows are equal is estimated by the share of equal pairs
    within the files (a population of distinct records has none: the estimate is then 0); a
    holdout row then misses all ``n`` train rows with probability ``(1 - p)^n``.
    """
    equal_pairs = sum(_equal_pairs(hashes) for hashes in (train, holdout))
    pairs = sum(len(hashes) * (len(hashes) - 1) / 2 for hashes in (train, holdout))
    if not pairs or not equal_pairs:
        return 0.0
    p = equal_pairs / pairs
    return float(len(holdout) * -np.expm1(len(train) * np.log1p(-p)))


def _equal_pairs(hashes: pd.Series) -> float:
    counts = hashes.value_counts().to_numpy(dtype=float)
    return float((counts * (counts - 1) / 2).sum())


def schema_differences(train: pd.DataFrame, holdout: pd.DataFrame) -> list[str]:
    """How the model inputs of two data files differ in columns or in numeric-ness."""
    if list(train.columns) != list(holdout.columns):
        return [
            f"model input columns differ (train: {', '.join(map(str, train.columns[:8]))}; "
            f"holdout: {', '.join(map(str, holdout.columns[:8]))})"
        ]
    return [
        f"column {column!r} is {train[column].dtype} in train but {holdout[column].dtype} in "
        "holdout"
        for column in train.columns
        if _is_numeric(train[column]) != _is_numeric(holdout[column])
    ]


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def model_classes(model: LoadedModel, train: Dataset) -> tuple[object, ...] | None:
    """The model's classes in the order of its probability columns, if known."""
    if model.classes is not None:
        return model.classes
    if train.target is None:
        return None
    # Formats without class labels (some ONNX graphs) order probability columns the way
    # scikit-learn does: by sorted label value.
    return tuple(sorted(train.frame[train.target].dropna().unique().tolist()))


def _class_codes(dataset: Dataset, classes: tuple[object, ...]) -> np.ndarray:
    """Index of each row's label in ``classes``; -1 for a label the model does not know."""
    assert dataset.target is not None
    exact = {c: i for i, c in enumerate(classes)}
    # CSV may give "1" where the model has 1, or the reverse; MLA702 reports such mismatches.
    textual = {str(c): i for i, c in enumerate(classes)}
    return np.array(
        [exact.get(v, textual.get(str(v), -1)) for v in dataset.frame[dataset.target].tolist()],
        dtype=np.int64,
    )


def _row_hashes(features: pd.DataFrame, dataset: Dataset) -> pd.Series:
    """One hash per row of model inputs and label; equal rows hash equal across files.

    Numbers are hashed as float64 so that 3 in one file and 3.0 in the other (a column that
    holds a missing value elsewhere becomes float) still match.
    """
    assert dataset.target is not None
    frame = features.copy()
    frame["__label__"] = dataset.frame[dataset.target].astype(str).to_numpy()
    for column in frame.columns:
        if _is_numeric(frame[column]):
            frame[column] = frame[column].astype(np.float64)
        else:
            frame[column] = frame[column].astype(str)
    return pd.util.hash_pandas_object(frame, index=False)
