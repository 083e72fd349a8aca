"""MLA3xx: privacy attacks on the loaded model, measured with intervals a gate can rely on."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import poisson

from mlaudit.core.delegation import CLUSTER_THREADS, Delegate
from mlaudit.core.findings import Confidence, Family, Finding, JsonValue, Location, Severity
from mlaudit.core.runcache import CacheKey
from mlaudit.privacy.art_bridge import (
    ART_EXTRA,
    ART_MISSING,
    art_available,
    art_classifier,
    codec_for,
)
from mlaudit.privacy.attacks import AttackScores, art_black_box, threshold_attacks
from mlaudit.privacy.attribute import (
    ATTRIBUTE_ATTACKS,
    AttributeRequest,
    AttributeResult,
    attack_columns,
)
from mlaudit.privacy.epsilon import certify
from mlaudit.privacy.evaluation import (
    InvalidEvaluation,
    MembershipData,
    membership_data,
    model_classes,
    privacy_rng,
)
from mlaudit.privacy.gating import MembershipThresholds, membership_verdict, strongest
from mlaudit.privacy.outputs import ModelOutputs, query_outputs
from mlaudit.privacy.reference import (
    PER_EXAMPLE_VARIANCE_MIN,
    PROFILE_REFERENCE_ROWS,
    PROFILE_REFERENCES,
    REFERENCE_FITS,
    FitBatch,
    ReferenceFits,
    ReferenceJob,
    ReferenceRequest,
    ReferencesDoNotFit,
    local_fit_batch,
    parallel_fit_settings,
    reference_attacks,
    reference_probabilities,
    refit_obstacle,
)
from mlaudit.privacy.roc import AttackEvaluation, evaluate_attack
from mlaudit.rules.base import (
    OptionKind,
    Requirement,
    Rule,
    RuleContext,
    RuleMeta,
    RuleOption,
    RuleSkipped,
)
from mlaudit.rules.controls import INVERSION, MEMBERSHIP
from mlaudit.subject.model_info import Task

_MEMBERSHIP_REQUIRES = frozenset({Requirement.MODEL, Requirement.LABELS, Requirement.TRAIN_HOLDOUT})


def _rate(name: str, default: float, help_text: str) -> RuleOption:
    """A probability-like option: strictly between 0 and 1."""
    return RuleOption(
        name, default, help_text, kind=OptionKind.NUMBER, minimum=0, maximum=1,
        exclusive_minimum=True, exclusive_maximum=True,
    )


def _rows_option(default: int, help_text: str, minimum: int = 1) -> RuleOption:
    return RuleOption("max_rows", default, help_text, kind=OptionKind.INTEGER, minimum=minimum)


_ROWS_OPTION = _rows_option(
    10000, "members evaluated at most (and as many non-members), sampled with the seed"
)
_CONFIDENCE_OPTION = _rate("confidence", 0.95, "confidence level of every interval")
_BOOTSTRAP_OPTION = RuleOption(
    "bootstrap", 1000, "bootstrap resamples per interval", kind=OptionKind.INTEGER, minimum=100
)
# joblib's convention, with 0 read as -1: a count of workers, or all cores.
_N_JOBS_OPTION = RuleOption(
    "n_jobs", -1, "cores fitting reference models (-1 or 0: all)",
    kind=OptionKind.INTEGER, minimum=-1,
)
_REFERENCE_ROWS_OPTION = RuleOption(
    "reference_rows", None,
    "rows each reference model trains on at most (never fewer than the evaluated members); "
    "null takes the profile's (quick 5000, standard 10000, thorough all)",
    kind=OptionKind.INTEGER, minimum=1, nullable=True,
)
_MEMBERSHIP_OPTIONS = (
    RuleOption(
        "fpr_levels",
        [0.001, 0.01, 0.1],
        "false-positive rates at which the TPR is reported; each needs at least 10 / rate "
        "non-members, otherwise the result says how many holdout rows it needs",
        kind=OptionKind.NUMBERS,
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
        exclusive_maximum=True,
    ),
    _rate("high_at_fpr", 0.01, "the false-positive rate the high-severity criterion looks at"),
    _rate(
        "high_tpr_lower_bound",
        0.05,
        "high finding when the lower confidence bound of TPR at `high_at_fpr` exceeds this",
    ),
    _rate(
        "medium_auc_lower_bound",
        0.6,
        "medium finding when the lower confidence bound of the AUC exceeds this",
    ),
    _rate(
        "high_auc_lower_bound",
        0.65,
        "high finding when the lower confidence bound of the AUC exceeds this (catches "
        "memorising models with tied scores and holdouts too small for a low FPR)",
    ),
    _CONFIDENCE_OPTION,
    _BOOTSTRAP_OPTION,
    _ROWS_OPTION,
)


@dataclass(frozen=True)
class _Statistics:
    fpr_levels: tuple[float, ...]
    thresholds: MembershipThresholds
    confidence: float
    resamples: int
    max_rows: int

    @classmethod
    def from_options(cls, ctx: RuleContext) -> _Statistics:
        thresholds = MembershipThresholds(
            ctx.option_float("high_at_fpr"),
            ctx.option_float("high_tpr_lower_bound"),
            ctx.option_float("medium_auc_lower_bound"),
            ctx.option_float("high_auc_lower_bound"),
        )
        # The gate's FPR is always measured, whether or not it is listed for the report.
        fprs = sorted({*ctx.option_floats("fpr_levels"), thresholds.high_at_fpr})
        return cls(
            tuple(fprs),
            thresholds,
            ctx.option_float("confidence"),
            ctx.option_int("bootstrap"),
            ctx.option_int("max_rows"),
        )


# --------------------------------------------------------------------------- shared steps


def _require_classifier(ctx: RuleContext) -> None:
    assert ctx.model is not None
    if ctx.model.task is not Task.CLASSIFICATION:
        raise RuleSkipped(
            f"privacy attacks are implemented for classifiers; this model's task is "
            f"{ctx.model.task.value}"
        )


def _data_or_skip(ctx: RuleContext, max_rows: int) -> MembershipData:
    """The evaluation data; rules other than MLA301 skip when it is invalid (MLA301 reports)."""
    assert ctx.model is not None
    try:
        return membership_data(ctx.subject, ctx.model, ctx.seed, max_rows)
    except InvalidEvaluation as invalid:
        raise RuleSkipped(f"the membership evaluation is invalid: {invalid}") from None


def _outputs(ctx: RuleContext, data: MembershipData) -> ModelOutputs:
    assert ctx.model is not None
    try:
        return query_outputs(ctx.model, data.features, data.classes)
    except InvalidEvaluation as invalid:
        raise RuleSkipped(str(invalid)) from None


def _evaluate(
    ctx: RuleContext, attacks: Sequence[AttackScores], member: np.ndarray, stats: _Statistics
) -> list[AttackEvaluation]:
    rng = privacy_rng(ctx.seed, "bootstrap")
    # The FPR the high criterion is judged at on a small holdout is measured too.
    judged = stats.thresholds.judged_fpr(int((~member).sum()))
    levels = tuple(sorted({*stats.fpr_levels, *([] if judged is None else [judged])}))
    evaluations = []
    for attack in attacks:
        ctx.check_budget()
        evaluations.append(
            evaluate_attack(
                attack.name, attack.scores, member, rng,
                fpr_levels=levels, resamples=stats.resamples,
                confidence=stats.confidence,
            )
        )
    return evaluations


def _cluster_fit_batch(
    delegate: Delegate, request: ReferenceRequest, deadline: float
) -> tuple[FitBatch, int]:
    """References fitted on the run's cluster, a round of them at a time."""

    def fit(batch: Sequence[ReferenceJob]) -> list[np.ndarray]:
        timeout = max(deadline - time.monotonic(), 0.0)
        rows = delegate(REFERENCE_FITS, request.params([j.index for j in batch]), timeout)
        assert isinstance(rows, list)
        return [np.asarray(row, dtype=float) for row in rows]

    return fit, _units_per_round(delegate)


def _units_per_round(delegate: Delegate) -> int:
    """Work units sent to the cluster at once: one per worker thread (each Dask worker
    loads the model once for the run, so a unit costs its own work), and the rule checks its
    budget between rounds."""
    threads = delegate(CLUSTER_THREADS, {}, 10.0)
    return max(int(threads) if isinstance(threads, int) else 1, 1)


def _reference_scores(
    ctx: RuleContext, data: MembershipData, outputs: ModelOutputs, count: int, data_rows: int
) -> tuple[list[AttackScores], int]:
    """The reference-model attacks with ``count`` references, fitted once per run (MLA302 and
    MLA304 asking for the same count on the same rows share one set of fitted models), and
    how many were fitted: fewer than ``count`` when the rule's budget scaled them down."""
    assert ctx.model is not None
    model = ctx.model

    rows = (
        PROFILE_REFERENCE_ROWS[ctx.profile]
        if ctx.option_is_null("reference_rows")
        else ctx.option_int("reference_rows")
    )
    budget_s = ctx.deadline - time.monotonic()

    def fit() -> ReferenceFits:
        parallelism = parallel_fit_settings(model.estimator, ctx.option_int("n_jobs") or -1)
        request = ReferenceRequest(ctx.seed, data_rows, count, rows, parallelism.explicit)
        plan = request.plan(data)
        if ctx.delegate is not None:
            fit_batch, workers = _cluster_fit_batch(ctx.delegate, request, ctx.deadline)
        else:
            fit_batch, workers = local_fit_batch(model, data, parallelism), parallelism.at_once
        try:
            return reference_probabilities(
                plan, fit_batch, batch_size=workers, deadline=ctx.deadline,
                budget_s=budget_s, progress=ctx.progress, check_budget=ctx.check_budget,
            )
        except ReferencesDoNotFit as reason:
            raise RuleSkipped(str(reason)) from None

    # Within a run the pool is fixed (every usable train and holdout row); the fits depend
    # on it, on the rows they score, on the count, the rows per reference and the seed.
    scored = hashlib.sha256(np.ascontiguousarray(data.targets).tobytes()).hexdigest()
    key = CacheKey("reference-models", (ctx.seed, count, rows, len(data.pool), scored))
    fits = ctx.shared(key, fit)
    ctx.metrics.update(fits.metrics())
    ctx.metrics["audited_training_rows"] = int(data.pool_member.sum())
    if fits.scaled_down is not None:
        ctx.progress(fits.scaled_down)
    attacks = reference_attacks(
        outputs.true_class_probability(data.labels),
        fits.probabilities,
        fits.plan.keep[:, data.targets],
    )
    return attacks, fits.plan.count


def _membership_report(
    ctx: RuleContext,
    data: MembershipData,
    evaluations: Sequence[AttackEvaluation],
    stats: _Statistics,
) -> Iterator[Finding]:
    """Metrics and findings shared by MLA301 and MLA302."""
    best = strongest(evaluations, stats.thresholds)
    ctx.metrics.update(data.metrics())
    ctx.metrics["thresholds"] = stats.thresholds.as_metric()
    ctx.metrics["strongest"] = best.attack
    ctx.metrics["auc"] = best.auc.as_metric()
    ctx.metrics["tpr_at_fpr"] = [t.as_metric() for t in best.tpr_at_fpr]
    ctx.metrics["attacks"] = [e.as_metric() for e in evaluations]
    model = ctx.subject.model.reference
    verdict = membership_verdict(evaluations, stats.thresholds)
    if verdict is not None:
        evidence: dict[str, JsonValue] = {
            "attack": verdict.evaluation.attack,
            "auc": verdict.evaluation.auc.as_metric(),
            "tpr_at_fpr": [t.as_metric() for t in verdict.evaluation.tpr_at_fpr],
            "members": verdict.evaluation.members,
            "non_members": verdict.evaluation.non_members,
        }
        yield ctx.finding(
            key="membership",
            title="Training-set membership can be inferred from the model",
            message=f"{verdict.reason}. Whoever can query the model can tell, better than "
            "chance, whether a person's record was in the training data.",
            severity=verdict.severity,
            location=Location(model),
            evidence=evidence,
        )
    gate = best.tpr_at(stats.thresholds.high_at_fpr)
    if gate is not None and gate.interval is None:
        judged = stats.thresholds.judged_fpr(best.non_members)
        instead = (
            "Only the AUC criterion was applied"
            if judged is None
            else f"The high criterion was judged at {judged:.2%} FPR instead, the smallest "
            f"this holdout evaluates, against a TPR bound of "
            f"{stats.thresholds.tpr_threshold(judged):.1%}"
        )
        yield ctx.finding(
            key="low-fpr-not-evaluable",
            title="TPR at the gate's false-positive rate could not be measured",
            message=f"TPR at {stats.thresholds.high_at_fpr:.1%} FPR needs at least "
            f"{gate.needs_rows} holdout rows (and as many training rows); the evaluation has "
            f"{best.non_members}. {instead}; supply more holdout rows for the full test.",
            severity=Severity.INFO,
            location=Location(model),
            evidence={
                "needs_holdout_rows": gate.needs_rows,
                "non_members": best.non_members,
                "judged_at_fpr": judged,
            },
        )


# --------------------------------------------------------------------------- rules


class ReferenceFreeMembershipInference(Rule):
    """Membership inference without reference models.

    **What it checks**: whether someone who can query the model can tell members of its
    training data (``--train``) from non-members (``--holdout``). Equal numbers of each are
    sampled with the run seed and attacked with the loss-threshold attack (Yeom et al. 2018),
    the confidence-threshold attack (Salem et al. 2019), the label-only rule-based attack
    (correctly classified means member; ART's ``MembershipInferenceBlackBoxRuleBased``) and,
    when ART is installed, ART's trained ``MembershipInferenceBlackBox`` (cross-fitted).
    Every attack is listed with its AUC and its TPR at low false-positive rates, each with a
    confidence interval (stratified bootstrap; Clopper-Pearson for TPR), and its ROC curve;
    the strongest is reported. TPR at an FPR of ``a`` is reported only with at least
    ``10 / a`` non-members; otherwise the result says how many holdout rows it needs. Tied
    scores (a 1-nearest-neighbour model, a single tree, a forest's probability of exactly 1)
    are ordered at random with the run seed, so a tied block cannot hide a leak at low FPR.
    Holdout rows that also occur in train are excluded from the non-members and reported:
    as information when rows repeat within the files often enough for chance to explain
    them (coarse, categorical data), low when beyond chance, medium beyond 1% of the holdout.
    Models without probabilities get the label-only attacks.

    **Why it matters**: membership itself is personal data (being in a hospital's training
    set says you were a patient), and it is the first step of stronger attacks. Reporting the
    TPR at low FPR matters because an attack that identifies a few people with near certainty
    is a breach even when its average accuracy looks harmless (Carlini et al. 2022).

    **How to fix**: reduce memorisation: regularise (limit tree depth, raise
    ``min_samples_leaf``, stronger weight decay), use more training data, stop earlier, or train
    with differential privacy (DP-SGD, or a DP implementation of the model family). Do not
    return probabilities if labels suffice, or round them. Rerun with MLA302, which is
    stronger, before concluding a model does not leak.

    **Options**: the thresholds are applied to confidence bounds: high when the lower bound of
    TPR at ``high_at_fpr`` (0.01) exceeds ``high_tpr_lower_bound`` (0.05) or the lower bound of
    the AUC exceeds ``high_auc_lower_bound`` (0.65: memorising models with tied scores, and
    holdouts too small for a low FPR), medium when the lower bound of the AUC exceeds
    ``medium_auc_lower_bound`` (0.6). A holdout too small for
    ``high_at_fpr`` (under 1,000 non-members at 1%) is judged at the smallest FPR it evaluates,
    10 / non-members (up to 10%), against ``high_tpr_lower_bound`` scaled by the same factor:
    600 holdout rows judge TPR at 1.67% FPR against 8.3%. ``fpr_levels`` ([0.001, 0.01,
    0.1]) are the false-positive rates reported, each only with at least 10 / rate
    non-members. ``confidence`` (0.95) is the level of every interval, ``bootstrap`` (1000) the
    resamples per interval, ``max_rows`` (10000) the members evaluated at most (and as many
    non-members).
    """

    meta = RuleMeta(
        id="MLA301",
        name="Reference-free membership inference",
        family=Family.PRIVACY,
        severity=Severity.HIGH,
        requires=_MEMBERSHIP_REQUIRES,
        options=_MEMBERSHIP_OPTIONS,
        controls=MEMBERSHIP,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        _require_classifier(ctx)
        stats = _Statistics.from_options(ctx)
        try:
            data = membership_data(ctx.subject, ctx.model, ctx.seed, stats.max_rows)
            outputs = query_outputs(ctx.model, data.features, data.classes)
        except InvalidEvaluation as invalid:
            yield ctx.finding(
                key="evaluation-invalid",
                title="Membership cannot be evaluated on this train and holdout data",
                message=f"{invalid}. Every membership result on this data would be "
                "meaningless; fix the data before trusting any privacy result.",
                severity=Severity.HIGH,
                location=Location(ctx.subject.model.reference),
            )
            return
        yield from _overlap_finding(ctx, data)
        attacks = threshold_attacks(outputs, data.labels)
        skipped: dict[str, JsonValue] = {}
        if art_available():
            ctx.check_budget()
            classifier = art_classifier(ctx.model, codec_for(data.features), data.classes)
            attacks.append(
                art_black_box(
                    outputs, data.labels, data.member, classifier,
                    privacy_rng(ctx.seed, "art-black-box"),
                )
            )
        else:
            skipped["art-black-box"] = ART_MISSING
        if outputs.label_only:
            skipped["loss"] = skipped["confidence"] = "the model gives no probabilities"
        ctx.metrics["skipped_attacks"] = skipped
        yield from _membership_report(
            ctx, data, _evaluate(ctx, attacks, data.member, stats), stats
        )


# An overlap beyond chance at this significance is a leak; below it, chance explains it.
_OVERLAP_SIGNIFICANCE = 0.001
# The share of holdout rows above which a leak inflates holdout accuracy noticeably.
_OVERLAP_MEDIUM_SHARE = 0.01


def _overlap_severity(data: MembershipData, holdout_rows: int) -> Severity:
    """Info when chance explains the overlap; low for a real but small one; medium beyond 1%.

    Rows are excluded from the evaluation either way: whatever their cause, they are members.
    """
    beyond_chance = poisson.sf(data.overlap_rows - 1, data.expected_overlap)
    if beyond_chance >= _OVERLAP_SIGNIFICANCE:
        return Severity.INFO
    if data.overlap_rows < _OVERLAP_MEDIUM_SHARE * holdout_rows:
        return Severity.LOW
    return Severity.MEDIUM


def _overlap_finding(ctx: RuleContext, data: MembershipData) -> Iterator[Finding]:
    if not data.overlap_rows:
        return
    holdout = ctx.subject.dataset("holdout")
    assert holdout is not None
    severity = _overlap_severity(data, holdout.rows)
    chance = (
        f"Chance explains this: rows repeat within the files often enough to predict "
        f"{data.expected_overlap:.1f} shared rows between independent samples."
        if severity is Severity.INFO
        else f"Chance predicts {data.expected_overlap:.1f} such rows (from the repeats within "
        "each file): the holdout shares records with the training data. If it is also used "
        "to report accuracy, that accuracy is inflated too."
    )
    yield ctx.finding(
        key="train-holdout-overlap",
        title="Holdout rows also occur in the training data",
        message=f"{data.overlap_rows} of {holdout.rows} holdout rows have the same model inputs "
        "and label as a training row. They are members, not non-members: they were excluded "
        f"from the evaluation, which would otherwise be invalid. {chance}",
        severity=severity,
        location=Location(str(holdout.path)),
        evidence={
            "rows": data.overlap_rows,
            "holdout_rows": holdout.rows,
            "expected_by_chance": round(data.expected_overlap, 2),
        },
        artifact_key="holdout",
    )


class ReferenceModelMembershipInference(Rule):
    """Membership inference with reference models (LiRA and RMIA).

    **What it checks**: the strongest practical black-box membership attacks. ``k`` reference
    models are refitted with the audited model's hyperparameters (a scikit-learn ``clone``, new
    random seeds) on random halves of the supplied rows, every row in exactly half of them;
    each row's confidence under the audited model is then compared with its confidence under
    the references that did and did not train on it: LiRA online and offline (Carlini et al.
    2022; per-row variances from 16 observations per side, pooled variances below) and RMIA
    (Zarifzadeh et al. 2024). Each is reported with AUC and TPR at low FPR, with confidence
    intervals, as MLA301 does; the strongest is the headline. Reference models are trained in
    parallel with joblib. Models that cannot be refitted (ONNX, PyTorch, custom callables) or
    that return no probabilities are skipped with the reason.

    **Why it matters**: attacks without references judge every row against one global
    threshold, so they miss members that are hard examples (outliers, rare classes: exactly
    the people most at risk) and flag easy non-members. Calibrating per row with reference
    models finds several times more members at low FPR; a release check that runs only weak
    attacks gives false comfort.

    **How to fix**: as for MLA301: regularise, add data, train with differential privacy.
    Retrain and rerun; if the model must stay as it is, restrict who can query it and return
    labels instead of probabilities.

    **Options**: ``references`` is the number of reference models (default from the profile:
    quick 4, standard 8, thorough 32; quick is a smoke test that every rule can run, too few
    references to clear a model); ``n_jobs`` the cores fitting them (-1 or 0: all): an
    estimator with its own ``n_jobs`` (a forest) fits each reference on all of them, one
    that runs OpenMP (HistGradientBoosting) fits one reference at a time, others fit that many
    references at once. ``reference_rows`` caps the rows each reference trains on (default
    from the profile: quick 5000, standard 10000, thorough all; never fewer than half the
    evaluated rows): fewer rows than the audited model saw make cheaper, slightly weaker
    references, and the metrics give both sizes. The cost is measured as the references are
    fitted: when the rest would overrun the rule's budget, the rule stops after a whole pair
    (at least one) and says so in ``scaled_down``, rather than erroring. With
    MLA304 asking for as many references (its ``reference_models``), the two rules share one
    set of fitted models, and their metrics say which rule fitted them. The
    thresholds and statistics options are those of MLA301: ``fpr_levels``, ``high_at_fpr``,
    ``high_tpr_lower_bound``, ``high_auc_lower_bound``, ``medium_auc_lower_bound``,
    ``confidence``, ``bootstrap``, ``max_rows``.
    """

    meta = RuleMeta(
        id="MLA302",
        name="Reference-model membership inference",
        family=Family.PRIVACY,
        severity=Severity.HIGH,
        requires=_MEMBERSHIP_REQUIRES,
        options=(
            RuleOption(
                "references",
                None,
                "reference models to fit; null takes the profile's (quick 4, standard 8, "
                "thorough 32)",
                kind=OptionKind.INTEGER,
                minimum=2,
                nullable=True,
            ),
            _N_JOBS_OPTION,
            _REFERENCE_ROWS_OPTION,
            *_MEMBERSHIP_OPTIONS,
        ),
        controls=MEMBERSHIP,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        _require_classifier(ctx)
        obstacle = refit_obstacle(ctx.model)
        if obstacle is not None:
            raise RuleSkipped(obstacle)
        stats = _Statistics.from_options(ctx)
        count = (
            PROFILE_REFERENCES[ctx.profile]
            if ctx.option_is_null("references")
            else ctx.option_int("references")
        )
        data = _data_or_skip(ctx, stats.max_rows)
        outputs = _outputs(ctx, data)
        attacks, fitted = _reference_scores(ctx, data, outputs, count, stats.max_rows)
        ctx.metrics["references"] = fitted
        ctx.metrics["lira_variance"] = (
            "per-row" if fitted // 2 >= PER_EXAMPLE_VARIANCE_MIN else "pooled"
        )
        yield from _membership_report(
            ctx, data, _evaluate(ctx, attacks, data.member, stats), stats
        )


def _attribute_results(ctx: RuleContext, request: AttributeRequest) -> list[AttributeResult]:
    """Every requested column attacked: on the run's cluster, a round of columns at a time,
    or here one column at a time; the same per-column results either way."""
    assert ctx.model is not None
    # Built here with or without a cluster (one pass of the model over at most max_rows
    # rows): a model that cannot answer on the attacked rows skips the rule either way.
    try:
        target = request.target(ctx.model, ctx.subject)
    except InvalidEvaluation as invalid:
        raise RuleSkipped(str(invalid)) from None
    delegate = ctx.delegate
    if delegate is not None:

        def attack(indices: Sequence[int]) -> list[AttributeResult]:
            timeout = max(ctx.deadline - time.monotonic(), 0.0)
            answer = delegate(ATTRIBUTE_ATTACKS, request.params(indices), timeout)
            if not isinstance(answer, list) or len(answer) != len(indices):
                raise ValueError(f"the cluster's answer for {len(indices)} columns is malformed")
            return [AttributeResult.from_json(value) for value in answer]

        batch_size = _units_per_round(delegate)
    else:

        def attack(indices: Sequence[int]) -> list[AttributeResult]:
            return [request.attack(target, i) for i in indices]

        batch_size = 1
    return attack_columns(
        len(request.columns), attack, batch_size=batch_size, progress=ctx.progress,
        check_budget=ctx.check_budget,
    )


class AttributeInference(Rule):
    """Attribute inference on sensitive model inputs.

    **What it checks**: for each column listed in ``sensitive``, whether the model's
    predictions let someone who knows a training row's other inputs infer that column better
    than they could without the model. ART's ``AttributeInferenceBlackBox`` (other inputs and
    the model's prediction) is compared with ART's ``AttributeInferenceBaseline`` (other inputs
    only), both cross-fitted on training rows; the result is the attack's advantage over the
    baseline with a paired bootstrap confidence interval, in accuracy for categorical columns
    and in explained variance (R^2) for continuous ones. A sensitive column must be a model
    input: given the other inputs, the output of a model says nothing more about a column the
    model never saw. Without a configured column the rule is skipped.

    **Why it matters**: a model can act as an oracle for the attributes it was trained on:
    with a person's public attributes and the model's answer, an attacker recovers a private
    one (a diagnosis, an income bracket, an ethnicity). The baseline separates what the model
    reveals from what the population's correlations already give away.

    **How to fix**: drop the sensitive column from the model's inputs if the task allows it;
    otherwise reduce what the output carries (labels instead of probabilities, coarser
    outputs), regularise, or train with differential privacy. Confirm the fix by rerunning.

    **Options**: ``sensitive`` lists the columns to attack (set it under
    ``[tool.mlaudit.rules.MLA303]``). A finding is raised when the lower confidence bound of
    the advantage exceeds ``min_advantage`` (0.05). Numeric columns with more than
    ``max_categories`` (20) distinct values are treated as continuous. ``confidence`` (0.95)
    and ``bootstrap`` (1000) set the advantage's interval; ``max_rows`` (5000) caps the
    training rows attacked. Each column is attacked with its own random stream (from the
    seed and the column's name), so its result does not depend on the other columns listed;
    with a cluster (``--dask-scheduler``, ``--workers``) the columns' attack models are
    trained on its workers, with the same results.
    """

    meta = RuleMeta(
        id="MLA303",
        name="Attribute inference",
        family=Family.PRIVACY,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.MODEL, Requirement.TRAIN_HOLDOUT}),
        extra=ART_EXTRA,
        extra_modules=("art",),
        options=(
            RuleOption(
                "sensitive", [], "model input columns whose values are sensitive",
                kind=OptionKind.STRINGS,
            ),
            RuleOption(
                "min_advantage",
                0.05,
                "finding when the lower confidence bound of the advantage over the baseline "
                "exceeds this",
                minimum=0,
                maximum=1,
            ),
            RuleOption(
                "max_categories",
                20,
                "numeric columns with more distinct values are treated as continuous",
                minimum=1,
            ),
            _CONFIDENCE_OPTION,
            _BOOTSTRAP_OPTION,
            _rows_option(5000, "training rows attacked at most, sampled with the seed", 10),
        ),
        controls=INVERSION,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        _require_classifier(ctx)
        sensitive = ctx.option_strs("sensitive")
        if not sensitive:
            raise RuleSkipped(
                "no sensitive column configured: set sensitive = [\"column\", ...] under "
                "[tool.mlaudit.rules.MLA303]"
            )
        train = ctx.subject.dataset("train")
        assert train is not None
        inputs = ctx.model.select_features(train.features).columns
        skipped: dict[str, JsonValue] = {
            column: (
                "not a model input; a model's output cannot reveal more about a column it "
                "never saw than its other inputs do"
                if column in train.columns
                else "not a column of the training data"
            )
            for column in sensitive
            if column not in inputs
        }
        attacked = [c for c in sensitive if c not in skipped]
        if not attacked:
            raise RuleSkipped(
                "; ".join(f"sensitive column {c!r} is {why}" for c, why in skipped.items())
            )
        if model_classes(ctx.model, train) is None:
            raise RuleSkipped("the model does not name its classes; give --target")
        request = AttributeRequest(
            ctx.seed, ctx.option_int("max_rows"), tuple(attacked),
            ctx.option_int("max_categories"), ctx.option_int("bootstrap"),
            ctx.option_float("confidence"),
        )
        results = _attribute_results(ctx, request)
        ctx.metrics["columns"] = [r.as_metric() for r in results]
        ctx.metrics["skipped_columns"] = skipped
        threshold = ctx.option_float("min_advantage")
        for result in results:
            if result.advantage.low <= threshold:
                continue
            yield ctx.finding(
                key=f"attribute:{result.column}",
                title=f"The model reveals the sensitive input {result.column!r}",
                message=f"with the model's prediction, ART's attribute-inference attack infers "
                f"{result.column!r} of training rows with {result.score_name} "
                f"{result.attack_score:.3f}, against {result.baseline_score:.3f} without the "
                f"model: an advantage of {result.advantage.estimate:.3f} (lower bound "
                f"{result.advantage.low:.3f} > {threshold:g})",
                location=Location(ctx.subject.model.reference, pointer=result.column),
                evidence=result.as_metric(),
            )


class EmpiricalPrivacyBound(Rule):
    """Empirical differential-privacy bound (epsilon lower bound).

    **What it checks**: the largest epsilon for which the model is provably not
    (epsilon, delta)-differentially private, at the configured confidence. Any DP training
    algorithm bounds every membership test: TPR <= e^epsilon FPR + delta (and the same for
    the complementary test); a test that beats the bound refutes the epsilon (Jagielski et al.
    2020; Nasr et al. 2021). The loss, confidence and rule-based attacks of MLA301 (and, with
    ``reference_models`` set, the reference-model attacks of MLA302) are run on half of the
    evaluation rows to choose an attack and threshold; the other half certifies it with
    Clopper-Pearson bounds on TPR and FPR, so the selection does not inflate the bound. ART's
    trained attack is left out: it learns from membership labels, and certifying it honestly
    would need a third split. The bound assumes train and holdout are a random split of one
    population.

    **Why it matters**: a claim such as "trained with epsilon = 1" can be checked against the
    released model without trusting the training code: a lower bound above the claim means
    the claim is false (a bug, a misconfiguration, or data that leaked around the DP
    mechanism). Without a claim, the bound is a compliance reader's number for how much
    privacy the model demonstrably lacks. It is a lower bound: a small value does not show
    the model is private.

    **How to fix**: if a claim is refuted, audit the DP training pipeline (clipping, noise,
    accounting, sampling, data touched outside the DP mechanism) and retrain. Otherwise,
    reduce memorisation as for MLA301 and MLA302.

    **Options**: ``claimed_epsilon`` is the DP claim to test (a high finding when the bound
    exceeds it); ``delta`` the claim's delta; ``reference_models`` (unset: none; at least 2)
    adds MLA302's attacks with that many reference models, for a tighter bound at MLA302's
    cost, fitted on ``n_jobs`` cores with at most ``reference_rows`` rows each, as MLA302's
    are; set to MLA302's number of references (the
    profile's: quick 4, standard 8, thorough 32), the fitted models are MLA302's, at no extra
    cost. ``confidence`` (0.95) is the level of the Clopper-Pearson bounds and
    ``max_rows`` (10000) caps the members evaluated.
    """

    meta = RuleMeta(
        id="MLA304",
        name="Empirical differential-privacy bound",
        family=Family.PRIVACY,
        severity=Severity.HIGH,
        requires=_MEMBERSHIP_REQUIRES,
        options=(
            RuleOption(
                "claimed_epsilon", None, "the epsilon the model is claimed to satisfy, if any",
                kind=OptionKind.NUMBER, minimum=0, nullable=True,
            ),
            _rate("delta", 1e-5, "the delta of the (epsilon, delta)-DP guarantee tested"),
            RuleOption(
                "reference_models",
                None,
                "reference models for MLA302's attacks (null: reference-free attacks only); "
                "the same number as MLA302's shares its fitted models",
                kind=OptionKind.INTEGER,
                minimum=2,
                nullable=True,
            ),
            _N_JOBS_OPTION,
            _REFERENCE_ROWS_OPTION,
            _CONFIDENCE_OPTION,
            _ROWS_OPTION,
        ),
        controls=MEMBERSHIP,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        _require_classifier(ctx)
        delta = ctx.option_float("delta")
        confidence = ctx.option_float("confidence")
        max_rows = ctx.option_int("max_rows")
        data = _data_or_skip(ctx, max_rows)
        outputs = _outputs(ctx, data)
        attacks = threshold_attacks(outputs, data.labels)
        if not ctx.option_is_null("reference_models"):
            obstacle = refit_obstacle(ctx.model)
            if obstacle is None:
                attacks += _reference_scores(
                    ctx, data, outputs, ctx.option_int("reference_models"), max_rows
                )[0]
            else:
                ctx.metrics["reference_models_skipped"] = obstacle
        ctx.check_budget()
        bound = certify(
            attacks, data.member, privacy_rng(ctx.seed, "epsilon-split"),
            delta=delta, confidence=confidence,
        )
        ctx.metrics.update(data.metrics())
        ctx.metrics.update(bound.as_metric())
        ctx.metrics["attacks_considered"] = [a.name for a in attacks]
        location = Location(ctx.subject.model.reference)
        summary = (
            f"the {bound.attack} attack at threshold {bound.threshold:.4g} has TPR >= "
            f"{bound.tpr.low:.2%} and FPR <= {bound.fpr.high:.2%} on {bound.certification_rows} "
            f"held-out rows ({confidence:.0%} confidence), so the model is not "
            f"({bound.epsilon:.3f}, {delta:g})-DP"
        )
        if not ctx.option_is_null("claimed_epsilon"):
            claim = ctx.option_float("claimed_epsilon")
            ctx.metrics["claimed_epsilon"] = claim
            if bound.epsilon > claim:
                yield ctx.finding(
                    key="dp-claim-refuted",
                    title="The model's differential-privacy claim is refuted",
                    message=f"{summary}: the claim epsilon = {claim:g} is false.",
                    location=location,
                    evidence=bound.as_metric(),
                )
                return
        if bound.epsilon > 0:
            yield ctx.finding(
                key="epsilon-lower-bound",
                title="Empirical lower bound on epsilon",
                message=f"{summary}. This bounds any differential-privacy claim for the model "
                "from below.",
                severity=Severity.INFO,
                confidence=Confidence.HIGH,
                location=location,
                evidence=bound.as_metric(),
            )
