"""Attribute inference: does the model reveal a sensitive input of the people it was trained on?

ART's ``AttributeInferenceBlackBox`` learns the sensitive column from the other model inputs
and the model's prediction; ART's ``AttributeInferenceBaseline`` learns it from the other
inputs alone. What the model adds is the difference: the attack's advantage over the
baseline. Neither is given the true label, so the advantage is what the model's output
reveals, not what the label does.

Both are trained and scored on training rows (members), cross-fitted over two folds so that
no row is scored by an attack trained on it. The sensitive column must be a model input: a
model's output is a function of its inputs, so given the other inputs it can reveal nothing
about a column it never saw that those inputs do not already.

Categorical columns (text, or at most ``max_categories`` distinct numbers) are scored by
accuracy; continuous columns by R^2 (the share of the column's variance explained). Both give
an advantage in the same units: 0.10 is ten points of accuracy, or a tenth of the variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlaudit.core.findings import JsonValue
from mlaudit.core.stats import Interval, bootstrap_interval
from mlaudit.privacy.art_bridge import art_classifier, art_module, codec_for, seed_attack_model
from mlaudit.privacy.attacks import ART_ATTACK_MODEL, FOLDS, stratified_folds
from mlaudit.privacy.outputs import query_outputs
from mlaudit.subject.model_info import LoadedModel


@dataclass(frozen=True)
class AttributeResult:
    column: str
    continuous: bool
    rows: int
    attack_score: float
    baseline_score: float
    advantage: Interval

    @property
    def score_name(self) -> str:
        return "r2" if self.continuous else "accuracy"

    def as_metric(self) -> dict[str, JsonValue]:
        return {
            "column": self.column,
            "kind": "continuous" if self.continuous else "categorical",
            "score": self.score_name,
            "rows": self.rows,
            "attack": round(self.attack_score, 6),
            "baseline": round(self.baseline_score, 6),
            "advantage": self.advantage.as_metric(),
        }


def is_continuous(series: pd.Series, max_categories: int) -> bool:
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return bool(numeric and series.nunique(dropna=True) > max_categories)


@dataclass(frozen=True, eq=False)
class AttributeTarget:
    """What every attacked column shares: the encoded members, ART's view of the model, and
    the model's answers on the members (asked once, not once per column)."""

    members: pd.DataFrame
    columns: tuple[str, ...]
    matrix: np.ndarray
    classifier: Any
    predicted: np.ndarray


def attribute_target(
    model: LoadedModel, members: pd.DataFrame, classes: tuple[object, ...]
) -> AttributeTarget:
    codec = codec_for(members)
    return AttributeTarget(
        members,
        tuple(codec.columns),
        codec.encode(members),
        art_classifier(model, codec, classes),
        query_outputs(model, members, classes).predicted.reshape(-1, 1),
    )


def attribute_inference(
    target: AttributeTarget,
    column: str,
    rng: np.random.Generator,
    *,
    max_categories: int,
    resamples: int,
    confidence: float,
) -> AttributeResult:
    """ART's black-box attribute attack and its baseline on ``column`` of the members."""
    inference = art_module("art.attacks.inference.attribute_inference")
    matrix, classifier, predicted = target.matrix, target.classifier, target.predicted
    feature = list(target.columns).index(column)
    continuous = is_continuous(target.members[column], max_categories)
    truth = matrix[:, feature]
    attacked, baseline = np.empty(len(truth)), np.empty(len(truth))
    folds = stratified_folds(np.ones(len(truth), dtype=bool), rng, FOLDS)
    for fold in range(FOLDS):
        fit, score = folds != fold, folds == fold
        others = np.delete(matrix[score], feature, axis=1)
        attack = inference.AttributeInferenceBlackBox(
            classifier, attack_model_type=ART_ATTACK_MODEL, attack_feature=feature,
            is_continuous=continuous,
        )
        seed_attack_model(attack, rng)
        attack.fit(matrix[fit])
        attacked[score] = np.asarray(attack.infer(others, pred=predicted[score])).ravel()
        reference = inference.AttributeInferenceBaseline(
            attack_model_type=ART_ATTACK_MODEL, attack_feature=feature, is_continuous=continuous
        )
        seed_attack_model(reference, rng)
        reference.fit(matrix[fit])
        baseline[score] = np.asarray(reference.infer(others)).ravel()
    if continuous:
        attack_loss, baseline_loss = (attacked - truth) ** 2, (baseline - truth) ** 2

        def advantage(rows: np.ndarray) -> float:
            spread = float(((truth[rows] - truth[rows].mean()) ** 2).sum())
            return float((baseline_loss[rows] - attack_loss[rows]).sum() / max(spread, 1e-12))

        spread = float(((truth - truth.mean()) ** 2).sum()) or 1e-12
        attack_score = 1.0 - float(attack_loss.sum()) / spread
        baseline_score = 1.0 - float(baseline_loss.sum()) / spread
    else:
        attack_hit = (attacked == truth).astype(float)
        baseline_hit = (baseline == truth).astype(float)

        def advantage(rows: np.ndarray) -> float:
            return float(attack_hit[rows].mean() - baseline_hit[rows].mean())

        attack_score, baseline_score = float(attack_hit.mean()), float(baseline_hit.mean())
    interval = bootstrap_interval(
        advantage, len(truth), rng, resamples=resamples, confidence=confidence
    )
    return AttributeResult(
        column, continuous, len(truth), attack_score, baseline_score, interval
    )
