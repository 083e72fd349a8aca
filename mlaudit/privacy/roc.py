"""How well a membership score separates members from non-members, with honest intervals.

An attack gives every evaluated row a score, higher meaning "more likely a member". The field
reports the AUC and the true-positive rate at low false-positive rates (Carlini et al. 2022):
an attack that finds a few members with near certainty is a privacy failure even when its AUC
is unremarkable.

Conventions, chosen so that no number is flattering:

* TPR at FPR = a is the TPR of the most permissive threshold ``score >= t`` whose empirical
  FPR is at most a. :func:`evaluate_attack` first breaks tied scores at random (seeded): a
  block of ties (a 1-NN model, a single tree, a forest's probability of exactly 1) that is
  never split has no admissible threshold inside it, and would push TPR at low FPR, and
  its lower bound, to 0 however well the block separates members. A random order within the
  block is the randomised test that reaches the ROC's chord, a test an attacker can run.
* It is reported only with at least ``10 / a`` non-members, i.e. at least ten false positives
  expected at that threshold; with fewer the estimate is mostly noise, and the result says how
  many rows it needs instead.
* Intervals come from a stratified bootstrap (members and non-members resampled separately, the
  threshold re-chosen in every resample, so its own uncertainty is included). For TPR at FPR the
  interval is widened to also contain the Clopper-Pearson interval of the members above the
  threshold, which stays valid where a percentile bootstrap collapses (no hit at all: ``[0, 0]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlaudit.core.findings import JsonValue
from mlaudit.core.stats import DEFAULT_CONFIDENCE, Interval, clopper_pearson, percentile_interval

MIN_EXPECTED_FALSE_POSITIVES = 10
CURVE_POINTS = 25
# Resamples are drawn in chunks so memory stays at chunk x distinct scores, not B x scores.
_CHUNK = 100


def rows_needed(fpr: float) -> int:
    """Non-members needed before TPR at ``fpr`` is reported."""
    return math.ceil(MIN_EXPECTED_FALSE_POSITIVES / fpr - 1e-9)


@dataclass(frozen=True)
class TprAtFpr:
    """TPR at one FPR level: an interval, or the number of non-members it would need."""

    fpr: float
    interval: Interval | None
    needs_rows: int | None = None

    def as_metric(self) -> dict[str, JsonValue]:
        if self.interval is None:
            return {"fpr": self.fpr, "evaluable": False, "needs_holdout_rows": self.needs_rows}
        return {"fpr": self.fpr, "evaluable": True, **self.interval.as_metric()}


@dataclass(frozen=True)
class AttackEvaluation:
    attack: str
    members: int
    non_members: int
    auc: Interval
    tpr_at_fpr: tuple[TprAtFpr, ...]
    curve_fpr: tuple[float, ...]
    curve_tpr: tuple[float, ...]

    def tpr_at(self, fpr: float) -> TprAtFpr | None:
        return next((t for t in self.tpr_at_fpr if math.isclose(t.fpr, fpr)), None)

    def as_metric(self) -> dict[str, JsonValue]:
        return {
            "attack": self.attack,
            "members": self.members,
            "non_members": self.non_members,
            "auc": self.auc.as_metric(),
            "tpr_at_fpr": [t.as_metric() for t in self.tpr_at_fpr],
            # The HTML report draws this on a log-scaled FPR axis, from 1 / non-members to 1.
            "roc": {"fpr": list(self.curve_fpr), "tpr": list(self.curve_tpr)},
        }


@dataclass(frozen=True)
class _Grouped:
    """Each score replaced by the rank of its distinct value, 0 for the highest score.

    Group ``g`` is the ROC threshold "score >= g-th highest value"; counting rows per group is
    all the ROC needs, for the data and for every bootstrap resample.
    """

    members: np.ndarray
    non_members: np.ndarray
    groups: int


def _group(member_scores: np.ndarray, non_member_scores: np.ndarray) -> _Grouped:
    values, inverse = np.unique(
        np.concatenate([member_scores, non_member_scores]), return_inverse=True
    )
    rank = len(values) - 1 - inverse.ravel()
    return _Grouped(rank[: len(member_scores)], rank[len(member_scores) :], len(values))


def _counts(group_ids: np.ndarray, groups: int) -> np.ndarray:
    """Rows per group for each row of ``group_ids`` (shape resamples x rows)."""
    offsets = np.arange(group_ids.shape[0])[:, None] * groups
    flat = np.bincount((group_ids + offsets).ravel(), minlength=group_ids.shape[0] * groups)
    return flat.reshape(group_ids.shape[0], groups)


def _auc(members: np.ndarray, non_members: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count one half) per row of group counts."""
    n1 = members.sum(axis=1)
    n0 = non_members.sum(axis=1)
    at_or_above = np.cumsum(non_members, axis=1)
    below = n0[:, None] - at_or_above
    wins = (members * (below + 0.5 * non_members)).sum(axis=1)
    return np.asarray(wins / (n1 * n0), dtype=float)


def _hits_at(members: np.ndarray, non_members: np.ndarray, fpr: float) -> np.ndarray:
    """Members above the most permissive threshold whose FPR is at most ``fpr``."""
    n0 = non_members.sum(axis=1)
    false_positives = np.cumsum(non_members, axis=1)
    allowed = np.floor(fpr * n0 + 1e-9)
    # Cumulative counts never decrease, so the admissible thresholds are a prefix.
    admissible = (false_positives <= allowed[:, None]).sum(axis=1)
    true_positives = np.concatenate(
        [np.zeros((members.shape[0], 1), dtype=members.dtype), np.cumsum(members, axis=1)],
        axis=1,
    )
    return np.take_along_axis(true_positives, admissible[:, None], axis=1)[:, 0]


def tpr_at_fpr(member_scores: np.ndarray, non_member_scores: np.ndarray, fpr: float) -> float:
    """The point estimate of TPR at ``fpr`` (no evaluability rule, no interval)."""
    grouped = _group(member_scores, non_member_scores)
    members = _counts(grouped.members[None, :], grouped.groups)
    non_members = _counts(grouped.non_members[None, :], grouped.groups)
    return float(_hits_at(members, non_members, fpr)[0] / len(member_scores))


def auc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    grouped = _group(member_scores, non_member_scores)
    members = _counts(grouped.members[None, :], grouped.groups)
    non_members = _counts(grouped.non_members[None, :], grouped.groups)
    return float(_auc(members, non_members)[0])


def break_ties(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distinct scores in the same order as ``scores``, tied ones in a random order."""
    order = np.lexsort((rng.random(len(scores)), scores))
    ranks = np.empty(len(scores), dtype=float)
    ranks[order] = np.arange(len(scores), dtype=float)
    return ranks


def evaluate_attack(
    attack: str,
    scores: np.ndarray,
    member: np.ndarray,
    rng: np.random.Generator,
    *,
    fpr_levels: Sequence[float],
    resamples: int,
    confidence: float = DEFAULT_CONFIDENCE,
) -> AttackEvaluation:
    """AUC and TPR at each FPR level with intervals, and the ROC curve, for one attack."""
    ranked = break_ties(np.asarray(scores, dtype=float), rng)
    member_scores, non_member_scores = ranked[member], ranked[~member]
    n1, n0 = len(member_scores), len(non_member_scores)
    if n1 == 0 or n0 == 0:
        raise ValueError("an attack needs members and non-members to be evaluated")
    grouped = _group(member_scores, non_member_scores)
    point_members = _counts(grouped.members[None, :], grouped.groups)
    point_non_members = _counts(grouped.non_members[None, :], grouped.groups)
    evaluable = [f for f in fpr_levels if n0 >= rows_needed(f)]

    auc_draws: list[np.ndarray] = []
    hit_draws: dict[float, list[np.ndarray]] = {f: [] for f in evaluable}
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        members = _counts(grouped.members[rng.integers(0, n1, (size, n1))], grouped.groups)
        non_members = _counts(
            grouped.non_members[rng.integers(0, n0, (size, n0))], grouped.groups
        )
        auc_draws.append(_auc(members, non_members))
        for f in evaluable:
            hit_draws[f].append(_hits_at(members, non_members, f))

    auc_estimate = float(_auc(point_members, point_non_members)[0])
    tprs = []
    for f in fpr_levels:
        if f not in hit_draws:
            tprs.append(TprAtFpr(f, None, rows_needed(f)))
            continue
        hits = int(_hits_at(point_members, point_non_members, f)[0])
        boot = percentile_interval(hits / n1, np.concatenate(hit_draws[f]) / n1, confidence)
        exact = clopper_pearson(hits, n1, confidence)
        tprs.append(
            TprAtFpr(
                f,
                Interval(
                    hits / n1, min(boot.low, exact.low), max(boot.high, exact.high), confidence
                ),
            )
        )
    curve_fpr = np.geomspace(1.0 / n0, 1.0, CURVE_POINTS)
    curve_tpr = [
        float(_hits_at(point_members, point_non_members, f)[0] / n1) for f in curve_fpr
    ]
    return AttackEvaluation(
        attack=attack,
        members=n1,
        non_members=n0,
        auc=percentile_interval(auc_estimate, np.concatenate(auc_draws), confidence),
        tpr_at_fpr=tuple(tprs),
        curve_fpr=tuple(_significant(float(f)) for f in curve_fpr),
        curve_tpr=tuple(_significant(t) for t in curve_tpr),
    )


def _significant(value: float) -> float:
    """Four significant digits: enough for a plot, and small FPRs do not round to 0."""
    return float(f"{value:.4g}")
