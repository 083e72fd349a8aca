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

Each attacked column is a unit of work with its own random stream, derived from the run seed
and the column's name: its result is the same whether it is attacked alone or with others, on
this machine or on a cluster's worker, which rebuilds the attacked rows and the model's answers
from an :class:`AttributeRequest`'s plain values exactly as the rule does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlaudit.core.delegation import whole_param
from mlaudit.core.findings import JsonValue
from mlaudit.core.stats import Interval, bootstrap_interval
from mlaudit.privacy.art_bridge import art_classifier, art_module, codec_for, seed_attack_model
from mlaudit.privacy.attacks import ART_ATTACK_MODEL, FOLDS, stratified_folds
from mlaudit.privacy.evaluation import InvalidEvaluation, model_classes, privacy_rng
from mlaudit.privacy.outputs import query_outputs
from mlaudit.subject.build import Subject
from mlaudit.subject.model_info import LoadedModel

# The name under which attribute attacks are delegated to a cluster.
ATTRIBUTE_ATTACKS = "attribute-attacks"


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

    def as_json(self) -> dict[str, JsonValue]:
        """The result at full precision, as a cluster's task returns it."""
        interval = self.advantage
        return {
            "column": self.column, "continuous": self.continuous, "rows": self.rows,
            "attack": self.attack_score, "baseline": self.baseline_score,
            "advantage": [interval.estimate, interval.low, interval.high, interval.confidence],
        }

    @classmethod
    def from_json(cls, value: JsonValue) -> AttributeResult:
        """:meth:`as_json` read back; it crossed from a worker where the model ran, so it is
        checked, not asserted."""
        if not isinstance(value, dict):
            raise ValueError("an attribute result must be an object")
        column, continuous, rows = value.get("column"), value.get("continuous"), value.get("rows")
        scores = [value.get("attack"), value.get("baseline")]
        interval = value.get("advantage")
        numbers = [*scores, *(interval if isinstance(interval, list) else [])]
        if not (
            isinstance(column, str) and isinstance(continuous, bool)
            and isinstance(rows, int) and not isinstance(rows, bool)
            and isinstance(interval, list) and len(interval) == 4
            and all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers)
        ):
            raise ValueError(f"malformed attribute result: {value!r:.200}")
        floats = [float(n) for n in numbers if isinstance(n, int | float)]
        return cls(column, continuous, rows, floats[0], floats[1], Interval(*floats[2:]))


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
    """Raises :class:`InvalidEvaluation` when the model cannot answer on the members."""
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


def column_rng(seed: int, column: str) -> np.random.Generator:
    """The random stream of the attack on ``column``: its folds, its attack models' seeds and
    its bootstrap depend on the run seed and the column alone."""
    return privacy_rng(seed, f"attribute-inference:{column}")


@dataclass(frozen=True)
class AttributeRequest:
    """What determines the attacks on a run's sensitive columns, in plain values; a unit of
    work is an index into ``columns``, the columns attacked."""

    seed: int
    max_rows: int
    columns: tuple[str, ...]
    max_categories: int
    resamples: int
    confidence: float

    def params(self, indices: Sequence[int]) -> dict[str, JsonValue]:
        return {
            "seed": self.seed, "max_rows": self.max_rows, "columns": list(self.columns),
            "max_categories": self.max_categories, "resamples": self.resamples,
            "confidence": self.confidence, "indices": list(indices),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, JsonValue]) -> AttributeRequest:
        columns, confidence = params["columns"], params["confidence"]
        assert isinstance(columns, list)
        assert isinstance(confidence, int | float)
        return cls(
            whole_param(params, "seed"), whole_param(params, "max_rows"),
            tuple(str(c) for c in columns), whole_param(params, "max_categories"),
            whole_param(params, "resamples"), float(confidence),
        )

    def target(self, model: LoadedModel, subject: Subject) -> AttributeTarget:
        """The attacked training rows (at most ``max_rows``, sampled with the seed) and the
        model's answers on them; raises :class:`InvalidEvaluation` when the model cannot be
        attacked."""
        train = subject.dataset("train")
        assert train is not None
        classes = model_classes(model, train)
        if classes is None:
            raise InvalidEvaluation("the model does not name its classes; give --target")
        members = model.select_features(train.features)
        rng = privacy_rng(self.seed, "attribute-inference")
        size = min(len(members), self.max_rows)
        members = members.iloc[np.sort(rng.choice(len(members), size, replace=False))]
        return attribute_target(model, members, classes)

    def attack(self, target: AttributeTarget, index: int) -> AttributeResult:
        """The attack on column ``index``, with its own random stream."""
        column = self.columns[index]
        return attribute_inference(
            target, column, column_rng(self.seed, column), max_categories=self.max_categories,
            resamples=self.resamples, confidence=self.confidence,
        )


def attack_requested_columns(
    model: LoadedModel, subject: Subject, params: Mapping[str, JsonValue]
) -> JsonValue:
    """The columns ``params["indices"]`` of the request in ``params``, attacked here (a
    cluster task): each column's :meth:`AttributeResult.as_json`."""
    request = AttributeRequest.from_params(params)
    indices = params["indices"]
    assert isinstance(indices, list)
    target = request.target(model, subject)
    return [request.attack(target, i).as_json() for i in indices if isinstance(i, int)]


def attack_columns(
    count: int,
    attack: Callable[[Sequence[int]], list[AttributeResult]],
    *,
    batch_size: int,
    progress: Callable[[str], None],
    check_budget: Callable[[], None],
) -> list[AttributeResult]:
    """Columns ``0 .. count - 1`` attacked ``batch_size`` at a time (here, or on a cluster),
    the budget checked before each batch and the progress, with an ETA, after it."""
    results: list[AttributeResult] = []
    started = time.monotonic()
    while len(results) < count:
        check_budget()
        results.extend(attack(range(len(results), min(len(results) + batch_size, count))))
        eta = (time.monotonic() - started) / len(results) * (count - len(results))
        progress(f"attack models trained {len(results)}/{count}, ETA {eta:.0f} s")
    return results


