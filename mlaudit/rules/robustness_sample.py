"""What every robustness rule starts from: the attacked rows, the space, clean answers.

The sample size and the per-sample query budget come from the profile (quick for CI,
thorough for a release) unless a rule's options override them. The threat model (how far an
attacker may move each feature) is the user's to state; without one, the calibrated default ε
applies and a breach of it is evidence for a review, not a release blocker.

An evasion attack is computed once per run: its settings follow from the model, not from the
rule asking, and a rule asking for the same attack on the same sample (MLA203 after MLA201,
under L∞) reuses the result, so the report gives one radius per row, not two.

The rows themselves are built in :mod:`mlaudit.robustness.sample` from plain values, so that
a cluster task attacking or certifying a chunk of them rebuilds exactly the rule's rows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mlaudit.core.delegation import CLUSTER_THREADS
from mlaudit.core.findings import JsonValue, Severity
from mlaudit.core.runcache import CacheKey
from mlaudit.core.stats import Interval, clopper_pearson
from mlaudit.robustness.chunks import (
    ChunkPlan,
    ComputeChunks,
    decode_radii,
    delegated,
    map_chunks,
)
from mlaudit.robustness.evasion import (
    ATTACK_CHUNK_ROWS,
    EVASION_CHUNKS,
    ChunkedAttack,
    attack_params,
)
from mlaudit.robustness.hopskipjump import AttackSettings
from mlaudit.robustness.sample import (
    AttackSample,
    SampleRequest,
    SampleUnusable,
    build_sample,
    draw,
)
from mlaudit.rules.base import RuleContext, RuleSkipped
from mlaudit.subject.model_info import Task

# The ε judged when the user states none, in robust spreads (≈ standard deviations) of every
# feature at once: the largest ε of the grid at which every well-built model of
# bench/calibration.py keeps its medium threshold (see bench/README.md, "Calibration").
DEFAULT_EPSILON = 0.05
# Regressors: a prediction moving by more than this share of the model's holdout RMSE counts
# as flipped (a change the size of the model's own error is a real change of answer).
DEFAULT_RMSE_SHARE = 0.5
PROFILE_SAMPLES: Mapping[str, int] = {"quick": 50, "standard": 200, "thorough": 1000}
PROFILE_QUERIES: Mapping[str, int] = {"quick": 500, "standard": 2000, "thorough": 10000}
HISTOGRAM_EDGES = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


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
    """One evasion attack on a sample: the smallest flipping perturbation of each attacked
    row (inf: none found), and the model queries and calls it cost. When the rule's time ran
    short, only the first ``len(distance)`` attacked rows, and ``scaled_down`` says so."""

    distance: np.ndarray
    queries: int
    calls: int
    scaled_down: str | None = None

    def judged_rows(self, sample: AttackSample) -> int:
        """The sample rows the attack speaks for: all of them, or, scaled down, those before
        the first row it did not attack (every correct row among them was attacked)."""
        attacked = sample.correct
        return len(sample.frame) if len(self.distance) == len(attacked) else int(
            attacked[len(self.distance)]
        )


def smallest_flips(
    ctx: RuleContext, sample: AttackSample, settings: AttackSettings, *, share: float = 1.0
) -> AttackRun:
    """The batched HopSkipJump on the sample's correct rows, started from the sample itself,
    chunk by chunk, here or on the run's cluster, within ``share`` of the rule's time left.

    Computed once per run: the result depends on the sample, the settings and the seed
    (its generators are the seed's, not the rule's), and a rule asking again reuses it.
    """
    model = ctx.model
    assert model is not None

    def attack() -> AttackRun:
        compute: ComputeChunks
        if ctx.delegate is not None:
            params = attack_params(sample.request, settings)
            compute = delegated(ctx.delegate, EVASION_CHUNKS, params, ctx.deadline)
            wave = cluster_wave(ctx)
        else:
            chunked = ChunkedAttack(model, sample, settings, ctx.seed, ctx.check_budget)
            compute = lambda chunks: [chunked.chunk(c) for c in chunks]  # noqa: E731
            wave = 1
        started = time.monotonic()
        plan = ChunkPlan(len(sample.correct), ATTACK_CHUNK_ROWS, wave,
                         started + (ctx.deadline - started) * share,
                         f"rows attacked ({settings.norm})")
        run = map_chunks(plan, compute, progress=ctx.progress, check_budget=ctx.check_budget)
        parts = [_attack_part(value) for value in run.values]
        distance = np.concatenate([np.empty(0), *(radii for radii, _, _ in parts)])
        if len(distance) != min(len(parts) * ATTACK_CHUNK_ROWS, plan.rows):
            raise ValueError(f"{len(distance)} attack radii for {len(parts)} chunks")
        return AttackRun(
            distance, sum(q for _, q, _ in parts), sum(c for _, _, c in parts), run.scaled_down,
        )

    return ctx.shared(CacheKey("evasion-attack", (sample.digest, settings, ctx.seed)), attack)


def _attack_part(value: JsonValue) -> tuple[np.ndarray, int, int]:
    """A chunk's radii, queries and calls, checked (a cluster task's answer)."""
    if not isinstance(value, dict):
        raise ValueError("an attack chunk's result must be a table")
    queries, calls = value.get("queries"), value.get("calls")
    if not isinstance(queries, int) or not isinstance(calls, int):
        raise ValueError("an attack chunk's result must count its queries and calls")
    return decode_radii(value.get("radii")), queries, calls


def clean_metrics(sample: AttackSample) -> dict[str, JsonValue]:
    metrics: dict[str, JsonValue] = {
        "samples": len(sample.frame),
        "excluded_rows": sample.excluded_rows,
        "features": sample.space.describe(),  # type: ignore[dict-item]
        "task": sample.task.value,
    }
    if sample.task is Task.REGRESSION:
        metrics["tolerance"] = round(float(sample.tolerance or 0.0), 6)
        metrics["tolerance_basis"] = sample.tolerance_basis
    else:
        metrics["clean_accuracy"] = clopper_pearson(
            len(sample.correct), len(sample.frame)
        ).as_metric()
    return metrics


def draw_rows(ctx: RuleContext, candidates: np.ndarray) -> np.ndarray:
    """The rows the robustness family judges, drawn from ``candidates`` (see
    :func:`mlaudit.robustness.sample.draw`)."""
    return draw(candidates, ctx.seed, _sample_size(ctx))


def _sample_size(ctx: RuleContext) -> int:
    return ctx.option_int("samples") or PROFILE_SAMPLES[ctx.profile]


def sample_request(ctx: RuleContext, *, against_labels: bool = True) -> SampleRequest:
    """The rule's attacked rows in plain values: what :func:`prepare` and a cluster task
    build them from. Options a rule does not declare take their neutral value."""
    declared = ctx.options
    return SampleRequest(
        seed=ctx.seed,
        size=_sample_size(ctx),
        immutable=tuple(ctx.option_strs("immutable")),
        categorical=tuple(ctx.option_strs("categorical")),
        relative_epsilon=threat_model(ctx).relative if "epsilon" in declared else None,
        against_labels=against_labels,
        threshold=ctx.option_float("threshold") if "threshold" in declared else 0.0,
        tolerance_share=(
            ctx.option_float("tolerance") if "tolerance" in declared else DEFAULT_RMSE_SHARE
        ),
    )


def prepare(ctx: RuleContext, *, against_labels: bool = True) -> AttackSample:
    """Draw the sample, build the space and ask the model for its clean answers.

    ``against_labels``: a classifier's decisions are compared with the true labels (robust
    accuracy); otherwise with its own clean predictions (stability).
    """
    assert ctx.model is not None
    request = sample_request(ctx, against_labels=against_labels)
    try:
        return build_sample(ctx.model, ctx.subject, request)
    except SampleUnusable as reason:
        raise RuleSkipped(str(reason)) from None


def cluster_wave(ctx: RuleContext) -> int:
    """Chunks sent to the run's cluster at once: two per worker thread, so that a task
    loads the model once for two chunks and the budget is still checked between waves."""
    assert ctx.delegate is not None
    threads = ctx.delegate(CLUSTER_THREADS, {}, 10.0)
    return 2 * max(threads if isinstance(threads, int) else 1, 1)


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
