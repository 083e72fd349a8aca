"""What every robustness rule starts from: the attacked rows, the space, clean answers.

The sample size and the per-sample query budget come from the profile (quick for CI,
thorough for a release) unless a rule's options override them. The threat model (how far an
attacker may move each feature) is the user's to state; without one, the calibrated default ε
applies and a breach of it is evidence for a review, not a release blocker.

An evasion attack is computed once per run: its settings follow from the model, not from the
rule asking, and a rule asking for the same attack on the same sample (MLA203 after MLA201,
under L∞) reuses the result, so the report gives one radius per row, not two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.core.runcache import CacheKey
from mlaudit.core.stats import Interval, clopper_pearson, derived_rng
from mlaudit.robustness.hopskipjump import AttackOutcome, AttackSettings, hop_skip_jump
from mlaudit.robustness.oracle import ModelOutputError, Oracle
from mlaudit.robustness.space import FeatureSpace
from mlaudit.rules.base import RuleContext, RuleSkipped
from mlaudit.subject.model_info import InputKind, LoadedModel, Task

# The ε judged when the user states none, in robust spreads (≈ standard deviations) of every
# feature at once: the largest ε of the grid at which every well-built model of
# bench/calibration.py keeps its medium threshold (see bench/README.md, "Calibration").
DEFAULT_EPSILON = 0.05
# Regressors: a prediction moving by more than this share of the model's holdout RMSE counts
# as flipped (a change the size of the model's own error is a real change of answer).
DEFAULT_RMSE_SHARE = 0.5
PROFILE_SAMPLES: Mapping[str, int] = {"quick": 50, "standard": 200, "thorough": 1000}
PROFILE_QUERIES: Mapping[str, int] = {"quick": 500, "standard": 2000, "thorough": 10000}
SAMPLE_SALT = 0x4D4C4132  # "MLA2"
# Feature-space perturbations mean nothing for a model that reads one text per row.
TEXT_INPUT_REASON = "text input: MLA205 attacks text"
HISTOGRAM_EDGES = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# Tree ensembles' extra starts: more donor rows, and random points searched from every start
# (a tree ensemble's boundary is a union of box faces, easily missed from one start).
TREE_DONORS = 16
TREE_STARTS = 6


def attack_settings(model: LoadedModel, norm: str, budget: int) -> AttackSettings:
    """The evasion attack for ``model`` under ``norm`` with ``budget`` queries per row.

    Tree ensembles get cheap extra starts. The settings depend on the model, never on the
    rule, so every rule attacking a model under a norm runs, and shares, the same attack.
    """
    from mlaudit.robustness.trees import is_tree_ensemble

    if is_tree_ensemble(model.estimator):
        return AttackSettings(norm, budget, donors=TREE_DONORS, starts=TREE_STARTS)
    return AttackSettings(norm, budget)


@dataclass(frozen=True)
class ThreatModel:
    """How far the attacker may move the features, and whether the user said so.

    ``relative`` maps feature names or glob patterns to their own ε over ``epsilon``.
    """

    epsilon: float
    relative: Mapping[str, float]
    stated: bool


def threat_model(ctx: RuleContext) -> ThreatModel:
    """The rule's ``epsilon`` (0: the default) and ``feature_epsilon`` table."""
    epsilon = ctx.option_float("epsilon")
    table = ctx.option_table("feature_epsilon")
    judged = epsilon or DEFAULT_EPSILON
    relative = {name: value / judged for name, value in table.items()}
    return ThreatModel(judged, relative, bool(epsilon) or bool(table))


def epsilon_grid(ctx: RuleContext, threat: ThreatModel) -> list[float]:
    """The ε of the rule's ``epsilons`` curve, with the judged ε among them."""
    return sorted({*ctx.option_floats("epsilons"), threat.epsilon})


def cap(severity: Severity, stated: bool, task: Task, ctx: RuleContext) -> Severity:
    """At most medium unless the user ``stated`` the threat model (and, for regressors, the
    output change that counts): the defaults are a screening question, not a release criterion.
    """
    stated = stated and (task is not Task.REGRESSION or ctx.option_float("threshold") > 0)
    if stated or severity <= Severity.MEDIUM:
        return severity
    return Severity.MEDIUM


@dataclass(frozen=True, eq=False)
class AttackRun:
    """One evasion attack on a sample: its outcome and the model queries and calls it cost."""

    outcome: AttackOutcome
    queries: int
    calls: int


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
    tolerance_basis: str | None = None
    """Regressors: what ``tolerance`` was derived from (holdout RMSE, spread, threshold)."""

    @property
    def correct(self) -> np.ndarray:
        """Rows the attacks try to flip: correctly classified ones, or every regression row."""
        if self.task is Task.REGRESSION:
            return np.arange(len(self.frame))
        return np.flatnonzero(self.clean == self.reference)

    def oracle(self, ctx: RuleContext) -> Oracle:
        assert ctx.model is not None
        return Oracle(ctx.model, self.space, self.frame, self.reference, self.tolerance)

    def smallest_flips(self, ctx: RuleContext, settings: AttackSettings) -> AttackRun:
        """The batched HopSkipJump on the correct rows, started from the sample itself.

        Computed once per run: the result depends on the sample, the settings and the seed
        (its generator is the seed's, not the rule's), and a rule asking again reuses it.
        """

        def attack() -> AttackRun:
            oracle = self.oracle(ctx)
            outcome = hop_skip_jump(
                oracle,
                self.correct,
                settings,
                derived_rng(ctx.seed, f"evasion-attack:{settings.norm}"),
                donors=self.space.to_unit(self.frame),
                donor_outputs=self.clean,
                check_budget=ctx.check_budget,
            )
            return AttackRun(outcome, int(oracle.queries.sum()), oracle.calls)

        return ctx.shared(CacheKey("evasion-attack", (self.digest, settings, ctx.seed)), attack)

    @cached_property
    def digest(self) -> str:
        """A fingerprint of everything an attack on this sample depends on besides its
        settings: the rows, their reference and clean answers, the tolerance and the space."""
        space = self.space
        arrays = [
            pd.util.hash_pandas_object(self.frame, index=False).to_numpy(),
            pd.util.hash_pandas_object(pd.Series(self.reference), index=False).to_numpy(),
            pd.util.hash_pandas_object(pd.Series(self.clean), index=False).to_numpy(),
            space.lower, space.upper, space.integer, space.scale,
        ]
        digest = hashlib.sha256(
            repr((space.columns, space.mutable, self.task.value, self.tolerance)).encode()
        )
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def clean_metrics(self) -> dict[str, JsonValue]:
        metrics: dict[str, JsonValue] = {
            "samples": len(self.frame),
            "excluded_rows": self.excluded_rows,
            "features": self.space.describe(),  # type: ignore[dict-item]
            "task": self.task.value,
        }
        if self.task is Task.REGRESSION:
            metrics["tolerance"] = round(float(self.tolerance or 0.0), 6)
            metrics["tolerance_basis"] = self.tolerance_basis
        else:
            metrics["clean_accuracy"] = clopper_pearson(
                len(self.correct), len(self.frame)
            ).as_metric()
        return metrics


def draw_rows(ctx: RuleContext, candidates: np.ndarray) -> np.ndarray:
    """The sorted rows the robustness family judges, drawn from ``candidates``: one draw for
    the whole family, so MLA201-205 judge the same rows and can be compared."""
    size = ctx.option_int("samples") or PROFILE_SAMPLES[ctx.profile]
    rng = np.random.default_rng([ctx.seed, SAMPLE_SALT])
    return np.sort(rng.choice(candidates, size=min(size, len(candidates)), replace=False))


def prepare(ctx: RuleContext, *, against_labels: bool = True) -> AttackSample:
    """Draw the sample, build the space and ask the model for its clean answers.

    ``against_labels``: a classifier's decisions are compared with the true labels (robust
    accuracy); otherwise with its own clean predictions (stability).
    """
    model, sample = ctx.model, ctx.subject.sample
    assert model is not None
    assert sample is not None
    if model.input_kind is InputKind.TEXT:
        raise RuleSkipped(TEXT_INPUT_REASON)
    if model.task is Task.UNKNOWN:
        raise RuleSkipped("the model's task (classification or regression) is unknown")
    frames = [model.select_features(d.features) for d in ctx.subject.datasets]
    space = FeatureSpace.from_data(
        frames,
        immutable=ctx.option_strs("immutable"),
        categorical=ctx.option_strs("categorical"),
        relative_epsilon=threat_model(ctx).relative if "epsilon" in ctx.options else None,
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
    chosen = draw_rows(ctx, candidates)
    frame = features.iloc[chosen].reset_index(drop=True)
    clean = _checked(model.predict(frame), len(frame))
    tolerance: float | None = None
    basis: str | None = None
    if model.task is Task.REGRESSION:
        truth = None if labels is None else labels.to_numpy()[chosen]
        tolerance, basis = _regression_tolerance(ctx, clean, truth)
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
        frame,
        space,
        model.task,
        reference,
        clean,
        tolerance,
        len(features) - len(candidates),
        basis,
    )


def _regression_tolerance(
    ctx: RuleContext, clean: np.ndarray, truth: np.ndarray | None
) -> tuple[float, str]:
    """How far a regressor's prediction must move to count as a changed answer.

    The user's ``threshold`` if given; else ``tolerance`` times the model's RMSE on the
    labelled sample rows (its own error: a smaller move is within what it gets wrong anyway);
    without labels, ``tolerance`` times the spread of its predictions.
    """
    threshold = ctx.option_float("threshold")
    if threshold > 0:
        return threshold, "threshold (configured)"
    share = ctx.option_float("tolerance")
    predicted = clean.astype(np.float64)
    if truth is not None:
        known = ~pd.isna(truth)
        if known.any():
            errors = predicted[known] - truth[known].astype(np.float64)
            rmse = float(np.sqrt(np.mean(errors * errors)))
            if rmse > 0:
                return share * rmse, f"{share:g} x holdout RMSE {rmse:.6g}"
    spread = float(np.std(predicted))
    if not spread > 0:
        raise RuleSkipped("the model predicts one value for every sample row")
    return share * spread, f"{share:g} x standard deviation of the predictions (no labels)"


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
