"""An empirical lower bound on epsilon: how much differential privacy the model provably lacks.

If training is (epsilon, delta)-DP, every membership test ``score >= t`` satisfies (Kairouz et
al. 2015; used for auditing by Jagielski et al. 2020 and Nasr et al. 2021)::

    TPR <= e^epsilon * FPR + delta      and      1 - FPR <= e^epsilon * (1 - TPR) + delta

so an observed test refutes every epsilon below
``max(ln((TPR - delta) / FPR), ln((1 - FPR - delta) / (1 - TPR)))``. With the rates replaced
by a Clopper-Pearson lower bound on TPR and upper bound on FPR, that is a lower bound on
epsilon at the stated confidence.

Honesty requires two precautions, both taken here:

* The attack and its threshold are chosen on one half of the evaluation rows (the selection
  half) and the bound is computed on the other (the certification half). Choosing the best of
  thousands of thresholds on the same rows that certify it would overstate the bound.
* The TPR and FPR bounds are two-sided Clopper-Pearson intervals at the confidence level, so
  each one-sided bound holds with probability ``(1 + confidence) / 2`` and both together, by the
  union bound, with at least ``confidence``.

The bound assumes, as every one-run audit does, that train and holdout are a random split of
the same population: rows are exchangeable, and which of them were trained on is the only
difference the attack can see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlaudit.core.findings import JsonValue
from mlaudit.core.stats import DEFAULT_CONFIDENCE, Interval, clopper_pearson, clopper_pearson_bounds
from mlaudit.privacy.attacks import AttackScores, stratified_folds


def epsilon_from_rates(tpr: np.ndarray, fpr: np.ndarray, delta: float) -> np.ndarray:
    """The epsilon refuted by rates ``tpr`` and ``fpr`` (element-wise; 0 when none is)."""
    tpr, fpr = np.asarray(tpr, dtype=float), np.asarray(fpr, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A rate of exactly 0 (possible for point estimates, never for the bounds) gives inf.
        positive = np.where(tpr > delta, np.log(tpr - delta) - np.log(fpr), 0.0)
        negative = np.where(1.0 - fpr > delta, np.log(1.0 - fpr - delta) - np.log(1.0 - tpr), 0.0)
    return np.asarray(np.clip(np.maximum(positive, negative), 0.0, None), dtype=float)


def certified_epsilon_at(
    member_hits: np.ndarray,
    members: int,
    non_member_hits: np.ndarray,
    non_members: int,
    *,
    delta: float,
    confidence: float = DEFAULT_CONFIDENCE,
) -> np.ndarray:
    """The epsilon lower bound from hit counts above thresholds (element-wise)."""
    tpr_low, _ = clopper_pearson_bounds(member_hits, members, confidence)
    _, fpr_high = clopper_pearson_bounds(non_member_hits, non_members, confidence)
    return epsilon_from_rates(tpr_low, fpr_high, delta)


@dataclass(frozen=True)
class EpsilonBound:
    """The certified bound, and the test that certifies it."""

    epsilon: float
    attack: str
    threshold: float
    tpr: Interval
    fpr: Interval
    delta: float
    selection_rows: int
    certification_rows: int

    @property
    def point_epsilon(self) -> float:
        """Epsilon from the point estimates of TPR and FPR: context, not a bound."""
        return float(
            epsilon_from_rates(np.array([self.tpr.estimate]), np.array([self.fpr.estimate]),
                               self.delta)[0]
        )

    def as_metric(self) -> dict[str, JsonValue]:
        return {
            "epsilon_lower_bound": round(self.epsilon, 4),
            # Infinite when the chosen threshold has no false positive on the certification rows.
            "epsilon_point_estimate": (
                round(self.point_epsilon, 4) if np.isfinite(self.point_epsilon) else None
            ),
            "delta": self.delta,
            "confidence": self.tpr.confidence,
            "attack": self.attack,
            "threshold": float(f"{self.threshold:.6g}"),
            "tpr": self.tpr.as_metric(),
            "fpr": self.fpr.as_metric(),
            "selection_rows": self.selection_rows,
            "certification_rows": self.certification_rows,
        }


def certify(
    attacks: Sequence[AttackScores],
    member: np.ndarray,
    rng: np.random.Generator,
    *,
    delta: float,
    confidence: float = DEFAULT_CONFIDENCE,
) -> EpsilonBound:
    """Choose attack and threshold on one half of the rows, certify on the other."""
    half = stratified_folds(member, rng, 2)
    select, certify_rows = half == 0, half == 1
    best: tuple[float, str, float] | None = None
    for attack in attacks:
        threshold, value = _best_threshold(
            attack.scores[select], member[select], delta, confidence
        )
        if best is None or value > best[0]:
            best = (value, attack.name, threshold)
    assert best is not None, "certify needs at least one attack"
    _, name, threshold = best
    scores = next(a.scores for a in attacks if a.name == name)[certify_rows]
    is_member = member[certify_rows]
    above = scores >= threshold
    tpr = clopper_pearson(int((above & is_member).sum()), int(is_member.sum()), confidence)
    fpr = clopper_pearson(int((above & ~is_member).sum()), int((~is_member).sum()), confidence)
    epsilon = float(epsilon_from_rates(np.array([tpr.low]), np.array([fpr.high]), delta)[0])
    return EpsilonBound(
        epsilon, name, threshold, tpr, fpr, delta, int(select.sum()), int(certify_rows.sum())
    )


def _best_threshold(
    scores: np.ndarray, member: np.ndarray, delta: float, confidence: float
) -> tuple[float, float]:
    """The threshold whose certified bound on these rows is largest, and that bound.

    Selecting on the bound rather than on the point estimate avoids thresholds with no false
    positive at all, whose point estimate is infinite and whose certified value is poor.
    """
    values = np.unique(scores)[::-1]
    position = np.searchsorted(-values, -scores)  # index of each score's value, highest first
    member_hits = np.cumsum(np.bincount(position[member], minlength=len(values)))
    non_member_hits = np.cumsum(np.bincount(position[~member], minlength=len(values)))
    bounds = certified_epsilon_at(
        member_hits, int(member.sum()), non_member_hits, int((~member).sum()),
        delta=delta, confidence=confidence,
    )
    best = int(np.argmax(bounds))
    return float(values[best]), float(bounds[best])
