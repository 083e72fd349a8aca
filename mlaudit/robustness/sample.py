"""What every robustness rule starts from: the attacked rows, the space, clean answers.

The sample size and the per-sample query budget come from the profile (quick for CI,
thorough for a release) unless a rule's options override them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlaudit.errors import ConfigError
from mlaudit.findings import JsonValue
from mlaudit.model import Task
from mlaudit.robustness.hopskipjump import AttackOutcome, AttackSettings, hop_skip_jump
from mlaudit.robustness.oracle import ModelOutputError, Oracle
from mlaudit.robustness.space import FeatureSpace
from mlaudit.rules.base import RuleContext, RuleSkipped
from mlaudit.stats import Interval, clopper_pearson

PROFILE_SAMPLES: Mapping[str, int] = {"quick": 50, "standard": 200, "thorough": 1000}
PROFILE_QUERIES: Mapping[str, int] = {"quick": 500, "standard": 2000, "thorough": 10000}
SAMPLE_SALT = 0x4D4C4132  # "MLA2"
HISTOGRAM_EDGES = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def float_list(ctx: RuleContext, name: str) -> list[float]:
    value = ctx.options[name]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(f"option {name} must be a non-empty list of positive numbers")
    return sorted(float(v) for v in value)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class AttackSample:
    """The rows under attack and what the model says about them unperturbed."""

    frame: pd.DataFrame
    space: FeatureSpace
    task: Task
    reference: np.ndarray
    """True labels (classification) or clean predictions (regression), one per row."""
    clean: np.ndarray
    """The model's clean predictions."""
    tolerance: float | None
    excluded_rows: int

    @property
    def correct(self) -> np.ndarray:
        """Rows the attacks try to flip: correctly classified ones, or every regression row."""
        if self.task is Task.REGRESSION:
            return np.arange(len(self.frame))
        return np.flatnonzero(self.clean == self.reference)

    def oracle(self, ctx: RuleContext) -> Oracle:
        assert ctx.model is not None
        return Oracle(ctx.model, self.space, self.frame, self.reference, self.tolerance)

    def smallest_flips(
        self, ctx: RuleContext, oracle: Oracle, norm: str, budget: int, rng: np.random.Generator
    ) -> AttackOutcome:
        """MLA201's batched HopSkipJump on the correct rows, started from the sample itself."""
        return hop_skip_jump(
            oracle,
            self.correct,
            AttackSettings(norm, budget),
            rng,
            donors=self.space.to_unit(self.frame),
            donor_outputs=self.clean,
            check_budget=ctx.check_budget,
        )

    def clean_metrics(self) -> dict[str, JsonValue]:
        metrics: dict[str, JsonValue] = {
            "samples": len(self.frame),
            "excluded_rows": self.excluded_rows,
            "features": self.space.describe(),  # type: ignore[dict-item]
            "task": self.task.value,
        }
        if self.task is Task.REGRESSION:
            metrics["tolerance"] = round(float(self.tolerance or 0.0), 6)
        else:
            metrics["clean_accuracy"] = clopper_pearson(
                len(self.correct), len(self.frame)
            ).as_metric()
        return metrics


def prepare(ctx: RuleContext, *, against_labels: bool = True) -> AttackSample:
    """Draw the sample, build the space and ask the model for its clean answers.

    ``against_labels``: a classifier's decisions are compared with the true labels (robust
    accuracy); otherwise with its own clean predictions (stability).
    """
    model, sample = ctx.model, ctx.subject.sample
    assert model is not None
    assert sample is not None
    if model.task is Task.UNKNOWN:
        raise RuleSkipped("the model's task (classification or regression) is unknown")
    frames = [model.select_features(d.features) for d in ctx.subject.datasets]
    space = FeatureSpace.from_data(
        frames,
        immutable=ctx.strings("immutable"),
        categorical=ctx.strings("categorical"),
    )
    if space.dimensions == 0:
        raise RuleSkipped("no feature may change: every input is frozen, constant or not numeric")
    features = model.select_features(sample.features)
    usable = ~features.iloc[:, list(space.mutable)].isna().any(axis=1).to_numpy()
    labels = sample.labels
    if against_labels and labels is not None:
        usable &= labels.notna().to_numpy()
    candidates = np.flatnonzero(usable)
    if len(candidates) == 0:
        raise RuleSkipped("every sample row has a missing value in a feature that may change")
    size = int(ctx.number("samples")) or PROFILE_SAMPLES[ctx.profile]
    # One draw for the whole family, so MLA201-204 judge the same rows and can be compared.
    rng = np.random.default_rng([ctx.seed, SAMPLE_SALT])
    chosen = np.sort(rng.choice(candidates, size=min(size, len(candidates)), replace=False))
    frame = features.iloc[chosen].reset_index(drop=True)
    clean = _checked(model.predict(frame), len(frame))
    tolerance: float | None = None
    if model.task is Task.REGRESSION:
        spread = float(np.std(clean.astype(np.float64)))
        if not spread > 0:
            raise RuleSkipped("the model predicts one value for every sample row")
        tolerance = ctx.number("tolerance") * spread
        reference = clean
    elif not against_labels:
        reference = clean
    else:
        if labels is None:
            raise RuleSkipped("no labels: give --target")
        reference = labels.to_numpy()[chosen]
        if len(np.unique(reference)) < 2 and len(np.unique(clean)) < 2:
            raise RuleSkipped("the sample holds a single class and the model predicts only it")
    return AttackSample(
        frame, space, model.task, reference, clean, tolerance, len(features) - len(candidates)
    )


def _checked(outputs: np.ndarray, rows: int) -> np.ndarray:
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        outputs = outputs[:, 0]
    if outputs.shape != (rows,):
        raise ModelOutputError(
            f"the model's predict returned shape {outputs.shape} for {rows} rows; "
            f"expected ({rows},)"
        )
    return outputs


def robust_curve(radii: np.ndarray, total: int, epsilons: Sequence[float]) -> list[JsonValue]:
    """Robust accuracy against ε: rows correct and not flipped by any perturbation ≤ ε.

    ``radii`` are the smallest flipping perturbations of the ``attacked`` (correct) rows, inf
    where none was found; misclassified rows count as flipped at every ε.
    """
    curve: list[JsonValue] = []
    for epsilon in epsilons:
        survivors = int(np.sum(radii > epsilon))
        curve.append({"epsilon": epsilon, **clopper_pearson(survivors, total).as_metric()})
    return curve


def retained(radii: np.ndarray, epsilon: float) -> Interval | None:
    """Share of attacked rows whose decision survives every perturbation ≤ ε."""
    if len(radii) == 0:
        return None
    return clopper_pearson(int(np.sum(radii > epsilon)), len(radii))


def perturbation_summary(radii: np.ndarray) -> dict[str, JsonValue]:
    found = radii[np.isfinite(radii)]
    counts, _ = np.histogram(found, bins=HISTOGRAM_EDGES)
    summary: dict[str, JsonValue] = {
        "found": len(found),
        "histogram": {"edges": list(HISTOGRAM_EDGES), "counts": [int(c) for c in counts]},
    }
    if len(found):
        summary["median"] = round(float(np.median(found)), 6)
        summary["p10"] = round(float(np.percentile(found, 10)), 6)
    return summary
