"""MLA2xx: how easily small, realistic input changes flip the model's decisions."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from mlaudit.core.findings import Family, Finding, JsonValue, Location, Severity
from mlaudit.core.stats import derived_rng
from mlaudit.robustness.evasion import attack_settings
from mlaudit.robustness.sample import AttackSample
from mlaudit.robustness.space import project, within
from mlaudit.rules.base import (
    OptionKind,
    Requirement,
    Rule,
    RuleContext,
    RuleMeta,
    RuleOption,
    RuleSkipped,
)
from mlaudit.rules.controls import EVASION, RELIABILITY
from mlaudit.rules.robustness_sample import (
    DEFAULT_EPSILON,
    DEFAULT_RMSE_SHARE,
    PROFILE_QUERIES,
    AttackRun,
    ThreatModel,
    cap,
    clean_metrics,
    cluster_wave,
    draw_rows,
    epsilon_grid,
    perturbation_summary,
    prepare,
    retained,
    robust_curve,
    smallest_flips,
    threat_model,
)
from mlaudit.subject.model_info import InputKind, Task

if TYPE_CHECKING:
    from mlaudit.robustness.trees import LeafTable
from mlaudit.core.stats import Interval, clopper_pearson

NORMS = ("linf", "l2")
NORM_NAMES = {"linf": "L∞", "l2": "L2 (root mean square)"}


def _share(name: str, default: float, help_text: str) -> RuleOption:
    """A share of rows or decisions: a number from 0 to 1."""
    return RuleOption(name, default, help_text, kind=OptionKind.NUMBER, minimum=0, maximum=1)


def _count(name: str, default: int, help_text: str, minimum: int) -> RuleOption:
    return RuleOption(name, default, help_text, kind=OptionKind.INTEGER, minimum=minimum)


_REALISM = (
    RuleOption(
        "immutable", [], "features the attacker cannot change (never perturbed)",
        kind=OptionKind.STRINGS,
    ),
    RuleOption(
        "categorical", [], "numeric features that encode categories (never perturbed)",
        kind=OptionKind.STRINGS,
    ),
    _count(
        "samples", 0,
        "rows attacked; 0 takes the profile's (quick 50, standard 200, thorough 1000)", 0,
    ),
    RuleOption(
        "tolerance",
        DEFAULT_RMSE_SHARE,
        "regressors: an output moving more than this share of the model's holdout RMSE counts "
        "as flipped",
        kind=OptionKind.NUMBER,
        minimum=0,
        exclusive_minimum=True,
    ),
    RuleOption(
        "threshold",
        0.0,
        "regressors: the output change that counts as flipped, in the target's units "
        "(0: use tolerance); stating it lets a breach be high",
        kind=OptionKind.NUMBER,
        minimum=0,
    ),
)
_USE_BOUND = RuleOption(
    "use_bound",
    True,
    "judge the upper bound of the 95% interval (a finding only "
    "when the weakness is statistically clear) instead of the estimate",
    kind=OptionKind.BOOLEAN,
)
# How a share of correct decisions surviving the attack is judged, for every evasion attack.
_SEVERITY = (
    _share("high_below", 0.5, "high when under this share of correct decisions survives ε"),
    _share("medium_below", 0.8, "medium when under this share survives ε"),
    _USE_BOUND,
)
_THRESHOLDS = (
    RuleOption(
        "epsilon",
        0.0,
        "the perturbation budget judged, in robust spreads of each feature (0: the calibrated "
        f"default {DEFAULT_EPSILON:g}, where a breach is at most medium)",
        kind=OptionKind.NUMBER,
        minimum=0,
    ),
    RuleOption(
        "feature_epsilon",
        {},
        "a table of feature name or glob pattern (a family, pixel_*) = its own ε in robust "
        "spreads; 0 freezes the feature",
        kind=OptionKind.NUMBER_TABLE,
        minimum=0,
    ),
    RuleOption(
        "epsilons",
        [0.01, 0.02, 0.05, 0.1, 0.2, 0.5],
        "the ε grid of the accuracy curve",
        kind=OptionKind.NUMBERS,
        minimum=0,
        exclusive_minimum=True,
        min_items=1,
    ),
    *_SEVERITY,
)
_NORMS = RuleOption(
    "norms", list(NORMS), "the norms attacked", kind=OptionKind.STRINGS, choices=NORMS,
    min_items=1,
)
_QUERIES = _count("queries", 0, "model queries per row; 0 takes the profile's", 0)


def _judge(survival: Interval, ctx: RuleContext) -> Severity | None:
    value = survival.high if ctx.option_bool("use_bound") else survival.estimate
    if value < ctx.option_float("high_below"):
        return Severity.HIGH
    if value < ctx.option_float("medium_below"):
        return Severity.MEDIUM
    return None


def _threat_metrics(threat: ThreatModel, sample: AttackSample) -> dict[str, JsonValue]:
    """The ε judged, whose it is, and the integer features it cannot move."""
    return {
        "epsilon": threat.epsilon,
        "epsilon_unit": "robust spread (IQR/1.349, else standard deviation) of each feature",
        "threat_model": "configured" if threat.stated else "default",
        "below_integer_step": list(sample.space.below_step(threat.epsilon)),
    }


def _step_note(ctx: RuleContext, threat: ThreatModel, sample: AttackSample) -> Iterator[Finding]:
    """An ε under one integer step leaves that feature unmoved: say so, never silently."""
    stuck = sample.space.below_step(threat.epsilon)
    if not stuck:
        return
    shown = ", ".join(stuck[:5]) + (f" and {len(stuck) - 5} more" if len(stuck) > 5 else "")
    yield ctx.finding(
        key="integer-step",
        title="ε is below one step of integer features",
        message=(
            f"ε = {threat.epsilon:g} robust spreads is less than one step of {len(stuck)} "
            f"integer feature(s) ({shown}): they change by whole steps, so no L∞ "
            "perturbation within ε moves them and the audit at ε does not test them; state a "
            "feature_epsilon for them if an attacker can change them"
        ),
        severity=Severity.INFO,
        location=Location(ctx.subject.model.reference, pointer="integer-step"),
        evidence={"features": list(stuck), "epsilon": threat.epsilon},
    )


# The share of MLA203's time left after certification that its attack may use.
ATTACK_SHARE = 0.9


def _attack_note(run: AttackRun) -> str:
    """What a scaled-down attack did, and what its numbers speak for."""
    return (
        f"{run.scaled_down}; the numbers speak for the sample rows before the first one left "
        "unattacked"
    )


def _grid_radii(flips: Mapping[float, np.ndarray], grid: list[float]) -> np.ndarray:
    radii = np.full(len(next(iter(flips.values()))), np.inf)
    for eps in sorted(grid, reverse=True):
        radii[flips[eps]] = eps
    return radii


def _evasion_finding(
    ctx: RuleContext,
    sample: AttackSample,
    *,
    threat: ThreatModel,
    key: str,
    survival: Interval,
    attack: str,
) -> Iterator[Finding]:
    severity = _judge(survival, ctx)
    if severity is None:
        return
    flipped = "moved beyond the tolerance" if sample.task is Task.REGRESSION else "flipped"
    judged = cap(severity, threat.stated, sample.task, ctx)
    default = (
        ""
        if judged is severity
        else f"; at most {judged.value} under the default threat model (state epsilon to judge "
        "your own)"
    )
    yield ctx.finding(
        key=key,
        title="Decisions flip under small realistic perturbations",
        message=(
            f"{attack} {flipped} {1 - survival.estimate:.0%} of the "
            f"{'rows' if sample.task is Task.REGRESSION else 'correct decisions'} with changes "
            f"of at most {threat.epsilon:g} robust spreads of each feature "
            f"(95% CI of the share that survives: {survival.low:.0%}-{survival.high:.0%})"
            f"{default}"
        ),
        severity=judged,
        location=Location(ctx.subject.model.reference, pointer=key),
        evidence={"epsilon": threat.epsilon, "survival": survival.as_metric()},
    )


def _exact_linear(
    ctx: RuleContext, sample: AttackSample, norm: str, grid: list[float]
) -> dict[str, JsonValue] | None:
    """A binary linear model's exact robust accuracy on the sample (None for other models).

    Integer features make the exact answer a lattice problem, so their models get none.
    """
    from mlaudit.robustness.linear import NotLinear, hyperplane, linear_radii

    assert ctx.model is not None
    if sample.space.integer.any():
        return None
    try:
        weights, bias = hyperplane(ctx.model.estimator, len(sample.space.columns))
    except NotLinear:
        return None
    raw = sample.frame.to_numpy(dtype=np.float64)[sample.correct]
    radii = linear_radii(weights, bias, sample.space, raw, norm)
    return {
        "robust_accuracy": robust_curve(radii, len(sample.frame), grid),
        "median_radius": perturbation_summary(radii).get("median"),
    }


class BlackBoxEvasion(Rule):
    """Black-box evasion (decision-based attack).

    **What it checks**: how far the audited rows must be moved before the model's decision
    changes, using only its ``predict``, so it covers every model mlaudit can run (scikit-learn,
    ONNX, XGBoost, LightGBM, PyTorch, entry points). A batched HopSkipJump attack (ART's
    algorithm, every sample in one model call per step) searches for the smallest perturbation
    that flips each correctly classified row, under L∞ and L2 (root mean square), each with its
    own query budget, on features measured in their robust spread (interquartile range / 1.349,
    which is one standard deviation for normal data; the standard deviation where the IQR is
    0), so ε = 0.1 means "every feature moved by a tenth of its typical deviation".
    Perturbations stay inside the observed ranges, integer features stay integers, and features
    configured as immutable or categorical are never changed. Reported: clean accuracy, attack
    success rate within the query budget, robust accuracy at every ε of the grid with 95%
    intervals, the median and 10th percentile of the smallest flipping perturbations with a
    histogram, queries used, and the integer features whose one step is larger than ε (they
    cannot move at ε: an info finding says so). Regressors: a row counts as flipped when its
    prediction moves more than half the model's holdout RMSE (or the configured threshold).
    Tree ensembles get cheap extra starts (16 nearest donor rows and random points, the best 6
    each searched towards the row): their boundary is easily missed from one start. Each
    attack runs once per audit: MLA203 reuses the L∞ one (same sample, settings and seed), so
    the two rules report the same radii, and the metrics' ``reused`` says so. The rows are
    attacked in chunks of 100, each with its own seed from the run seed, on the run's Dask
    cluster when there is one (the same radii as a local run); each norm may use its share of
    the time left, and a chunk that would overrun it is not started: the norm then reports
    ``scaled_down`` and its numbers speak for the sample rows before the first one left
    unattacked.

    **Why it matters**: a model whose decisions flip when an applicant changes their stated
    income by 2% can be gamed by anyone who can query it, and is brittle against honest noise.
    The attack finds an upper bound on the robust radius: robustness is at most what it reports.

    **How to fix**: train with adversarial or noise augmentation, regularise (shallower trees,
    more leaves' samples, smaller C), drop or coarsen features that decide alone, and for tree
    ensembles compare with MLA203's certified bound. Mark features an applicant cannot change
    as ``immutable`` so the number reflects real threats.

    **Threat model**: without one, the calibrated default ε (0.05 robust spreads, chosen on the
    panel of ``bench/calibration.py``) is judged, and a breach is at most medium: a screening
    result to review, not a release blocker. Stating ``epsilon`` or ``feature_epsilon`` (and,
    for regressors, ``threshold``) says what an attacker can really do, and a breach at it can
    be high.

    **Options**: ``epsilon`` (0: the default 0.05) the budget judged and ``epsilons`` the
    curve's grid, in robust spreads; ``feature_epsilon`` a table of feature names or glob
    patterns (a family such as ``pixel_*``) to their own ε (0 freezes them); ``norms``
    (``["linf", "l2"]``); ``queries`` per row and norm (0: the profile's, quick 500, standard
    2000, thorough 10000); ``samples`` (0: quick 50, standard 200, thorough 1000);
    ``immutable`` and ``categorical`` feature lists; regressors: ``tolerance`` (0.5 of the
    holdout RMSE; of the predictions' standard deviation without labels) or ``threshold`` (in
    the target's units); severity: ``high_below`` (0.5), ``medium_below`` (0.8) on the share
    of correct decisions that survive ε, judged on the interval's upper bound while
    ``use_bound`` is true.
    """

    meta = RuleMeta(
        id="MLA201",
        name="Black-box evasion",
        family=Family.ROBUSTNESS,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.MODEL, Requirement.DATA, Requirement.LABELS}),
        options=(*_REALISM, *_THRESHOLDS, _NORMS, _QUERIES),
        controls=EVASION,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        sample = prepare(ctx)
        threat = threat_model(ctx)
        ctx.metrics.update(clean_metrics(sample))
        budget = ctx.option_int("queries") or PROFILE_QUERIES[ctx.profile]
        epsilon = threat.epsilon
        grid = epsilon_grid(ctx, threat)
        per_norm: dict[str, JsonValue] = {}
        calls = 0
        yield from _step_note(ctx, threat, sample)
        norms = ctx.option_strs("norms")
        for done, norm in enumerate(norms):
            # Each norm's attack may use its share of the time left, so the last one runs too.
            run = smallest_flips(
                ctx, sample, attack_settings(ctx.model, norm, budget), share=1 / (len(norms) - done)
            )
            radii = run.distance
            calls += run.calls
            survival = retained(radii, epsilon)
            per_norm[norm] = {
                "attacked": len(radii),
                "success_rate": (
                    clopper_pearson(int(np.isfinite(radii).sum()), len(radii)).as_metric()
                    if len(radii)
                    else None
                ),
                "robust_accuracy": robust_curve(radii, run.judged_rows(sample), grid),
                "survival_at_epsilon": survival.as_metric() if survival else None,
                "perturbation": perturbation_summary(radii),
                "queries": run.queries,
                **({} if run.scaled_down is None else {"scaled_down": _attack_note(run)}),
            }
            if survival is not None:
                yield from _evasion_finding(
                    ctx,
                    sample,
                    threat=threat,
                    key=norm,
                    survival=survival,
                    attack=f"A black-box attack ({NORM_NAMES[norm]})",
                )
        ctx.metrics.update(
            {
                **_threat_metrics(threat, sample),
                "queries_per_row": budget,
                "model_calls": calls,
                "norms": per_norm,
            }
        )


class GradientEvasion(Rule):
    """Gradient evasion (FGSM and PGD through ART).

    **What it checks**: for models that expose gradients — PyTorch models (a state dict with its
    ``--model-class``, a whole module, TorchScript; the gradients are torch's own, taken through
    the class logits whatever the head returns: logits, probabilities or one binary logit),
    scikit-learn ``LogisticRegression``, ``SVC`` and ``LinearSVC``, alone or after
    ``StandardScaler`` / ``MinMaxScaler`` — ART's Fast Gradient Sign Method and Projected
    Gradient Descent at every ε of the grid, under L∞ and L2, in the same scaled feature space
    as MLA201 (frozen features masked, integers rounded afterwards). Every adversarial example
    is projected onto the ε-ball (ART computes in float32 and lands a few ulps outside),
    realised and re-checked against the model; only real flips within ε count. For binary linear
    models without integer features the exact robust accuracy (closed-form radii) is reported
    beside the attacks. Other models are skipped with the reason (MLA201 covers them without
    gradients); regressors are left to MLA201 and MLA204.

    **Why it matters**: with white-box access, gradients find small flipping perturbations in
    a few steps; a linear model's robustness is set by its weights, and this measures it
    directly rather than by search.

    **How to fix**: regularise (smaller C, stronger L2), standardise features so no single one
    dominates, train with adversarial examples (ART's ``AdversarialTrainer``), and declare
    features an attacker cannot change ``immutable``.

    **Options**: ``epsilon``, ``feature_epsilon``, ``epsilons``, ``norms``, ``samples``,
    ``immutable``, ``categorical``, ``high_below``, ``medium_below`` and ``use_bound`` as for
    MLA201, with its threat model (a breach of the default ε is at most medium; judged on the
    stronger of the two attacks); ``iterations`` (20) PGD steps.
    """

    meta = RuleMeta(
        id="MLA202",
        name="Gradient evasion",
        family=Family.ROBUSTNESS,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.MODEL, Requirement.DATA, Requirement.LABELS}),
        extra="art",
        extra_modules=("art",),
        options=(
            *_REALISM[:3],
            *_THRESHOLDS,
            _NORMS,
            _count("iterations", 20, "PGD iterations", 1),
        ),
        controls=EVASION,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from mlaudit.robustness.gradient import (
            ATTACK_DTYPE,
            NoGradients,
            evade,
            gradient_model,
        )

        assert ctx.model is not None
        if ctx.model.task is not Task.CLASSIFICATION:
            raise RuleSkipped(
                "gradient evasion covers classifiers; MLA201 and MLA204 measure regressors"
            )
        sample = prepare(ctx)
        threat = threat_model(ctx)
        try:
            wrapped = gradient_model(ctx.model, sample.space)
        except NoGradients as reason:
            raise RuleSkipped(str(reason)) from None
        ctx.metrics.update(clean_metrics(sample))
        epsilon = threat.epsilon
        grid = epsilon_grid(ctx, threat)
        yield from _step_note(ctx, threat, sample)
        iterations = ctx.option_int("iterations")
        oracle = sample.oracle(ctx.model)
        attacked = sample.correct
        classes = list(ctx.model.classes or ())
        labels = np.array([classes.index(label) for label in sample.reference[attacked]])
        vectors = wrapped.to_input(sample.frame.to_numpy(dtype=np.float64)[attacked])
        mutable = list(sample.space.mutable)
        origin = vectors[:, mutable]
        per_norm: dict[str, JsonValue] = {}
        for norm in ctx.option_strs("norms"):
            flipped_at: dict[str, dict[float, np.ndarray]] = {"fgsm": {}, "pgd": {}}
            for method in ("fgsm", "pgd"):
                for eps in grid:
                    ctx.check_budget()
                    adversarial = evade(
                        wrapped,
                        vectors,
                        labels,
                        method=method,
                        norm=norm,
                        epsilon=eps,
                        iterations=iterations,
                    )
                    # ART computes in float32 and may land ulps past ε: project back onto the
                    # ball, realise, and compare within the attack's precision. Rounding
                    # integers can still carry a point past ε; such a flip does not count.
                    step = project(adversarial[:, mutable] - origin, eps, norm)
                    unit = sample.space.realise(origin + step)
                    inside = within(
                        unit - origin,
                        eps,
                        norm,
                        ATTACK_DTYPE,
                        float(np.max(np.abs(unit), initial=1.0)),
                    )
                    flipped_at[method][eps] = oracle.adversarial(attacked, unit) & inside
            # The smallest ε of the grid at which each row flipped: an attacker allowed ε may
            # use any smaller perturbation, so a row flipped at 0.02 counts as flipped at 0.05.
            radii = {method: _grid_radii(flips, grid) for method, flips in flipped_at.items()}
            curves: dict[str, JsonValue] = {
                method: robust_curve(r, len(sample.frame), grid) for method, r in radii.items()
            }
            exact = _exact_linear(ctx, sample, norm, grid)
            if exact is not None:
                curves["exact"] = exact
            survival = retained(np.minimum(radii["fgsm"], radii["pgd"]), epsilon)
            if survival is not None:
                curves["survival_at_epsilon"] = survival.as_metric()
                yield from _evasion_finding(
                    ctx,
                    sample,
                    threat=threat,
                    key=norm,
                    survival=survival,
                    attack=f"FGSM/PGD ({NORM_NAMES[norm]})",
                )
            per_norm[norm] = curves
        ctx.metrics.update(
            {
                **_threat_metrics(threat, sample),
                "robust_accuracy": per_norm,
                "attacked": len(attacked),
            }
        )


class TreeEnsembleVerification(Rule):
    """Tree-ensemble robustness verification.

    **What it checks**: for random forests, extra trees, gradient boosting (scikit-learn),
    XGBoost and LightGBM models, a certified lower bound on each row's robust radius under L∞:
    within it, no perturbation changes the decision. mlaudit reads the leaves of every tree as
    boxes and bounds the worst reachable combination tree by tree (a sound relaxation), with
    immutable features held inside their box; the extracted trees are checked to reproduce the
    model's own scores first. Beside it, MLA201's L∞ HopSkipJump attack, with the cheap extra
    starts it gives tree ensembles (16 nearest donor rows and random points, the best 6 each
    searched towards the row), gives the upper bound (run once: when MLA201 ran on the same
    sample it is reused, not rerun), so robust accuracy at ε is reported as "between a and
    b". The verdict reads the whole range: when even the attack's share is under ``medium_below`` or
    ``high_below`` the model is weak (as for MLA201, at most medium without a threat model);
    when only the certified share is under ``certified_below``, robustness cannot be shown,
    a low finding. Rows are certified in chunks of 25, on the run's Dask cluster when there is
    one; certification may use half the rule's time, and rows it leaves count as uncertified
    (radius 0, which keeps the bound sound), with ``scaled_down`` saying how many were done.

    **Why it matters**: an attack can only show that a model is weak; it cannot show that it
    is strong. The certified bound is the part of the robustness claim that holds whatever the
    attacker does, and the gap between the bounds says how much of the answer is still open.

    **How to fix**: a wide gap is not a weakness in itself; a low certified share at ε with a
    high attack share says the model may be robust but cannot be shown to be. Smaller, shallower
    ensembles verify more tightly; robust training for trees (e.g. Chen et al.'s robust
    splitting) raises both bounds.

    **Options**: ``epsilon``, ``feature_epsilon``, ``epsilons``, ``samples``, ``immutable``,
    ``categorical``, ``tolerance``, ``threshold``, ``high_below``, ``medium_below`` and
    ``queries`` as for MLA201; ``certified_below`` (0.5): a low finding when the certified
    share of correct decisions surviving ε (its upper bound while ``use_bound``) is under it.
    """

    meta = RuleMeta(
        id="MLA203",
        name="Tree-ensemble verification",
        family=Family.ROBUSTNESS,
        severity=Severity.LOW,
        requires=frozenset({Requirement.MODEL, Requirement.DATA, Requirement.LABELS}),
        options=(
            *_REALISM,
            *_THRESHOLDS,
            _share(
                "certified_below",
                0.5,
                "low when under this share of correct decisions is certified to survive ε",
            ),
            _QUERIES,
        ),
        controls=EVASION,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from mlaudit.robustness.trees import UnsupportedEnsemble, leaf_table

        assert ctx.model is not None
        sample = prepare(ctx)
        threat = threat_model(ctx)
        try:
            table = leaf_table(ctx.model.estimator, sample.frame)
        except UnsupportedEnsemble as reason:
            raise RuleSkipped(str(reason)) from None
        ctx.metrics.update(clean_metrics(sample))
        epsilon = threat.epsilon
        grid = epsilon_grid(ctx, threat)
        yield from _step_note(ctx, threat, sample)
        certified = self._certified(ctx, sample, table)
        budget = ctx.option_int("queries") or PROFILE_QUERIES[ctx.profile]
        # MLA201's L∞ attack on the same sample, with the same settings: shared, not rerun.
        # Most of the time left: the judgement after it is cheap.
        attack = smallest_flips(
            ctx, sample, attack_settings(ctx.model, "linf", budget), share=ATTACK_SHARE
        )
        # A scaled-down attack speaks for fewer rows: the certified side is cut to match.
        total, certified = attack.judged_rows(sample), certified[: len(attack.distance)]
        ctx.metrics.update(
            {
                **_threat_metrics(threat, sample),
                "norm": "linf",
                "trees": table.trees,
                "leaves": len(table.values),
                "certified_radius": perturbation_summary(np.where(certified > 0, certified, 0.0)),
                "attack_radius": perturbation_summary(attack.distance),
                "robust_accuracy": {
                    "certified": robust_curve(certified, total, grid),
                    "attack": robust_curve(attack.distance, total, grid),
                },
                **({} if attack.scaled_down is None else {
                    "attack_scaled_down": _attack_note(attack)
                }),
            }
        )
        lower = retained(certified, epsilon)
        upper = retained(attack.distance, epsilon)
        if lower is None or upper is None:
            return
        ctx.metrics["survival_at_epsilon"] = {
            "certified": lower.as_metric(),
            "attack": upper.as_metric(),
        }
        yield from self._judge_range(ctx, sample, threat, lower, upper)

    @staticmethod
    def _certified(ctx: RuleContext, sample: AttackSample, table: LeafTable) -> np.ndarray:
        """Every attacked row's certified radius, chunk by chunk, here or on the cluster.

        A row left uncertified keeps radius 0, which only lowers the certified bound: the
        bound stays sound when the rule stops early. Certification may use half the time
        left, so the shared attack and the judgement still fit in the rule's budget.
        """
        from mlaudit.robustness.certify import CERTIFIED_RADII, CERTIFY_CHUNK_ROWS, Certification
        from mlaudit.robustness.chunks import (
            ChunkPlan,
            ComputeChunks,
            decode_radii,
            delegated,
            map_chunks,
        )

        rows = len(sample.correct)
        started = time.monotonic()
        stop_at = started + (ctx.deadline - started) / 2
        compute: ComputeChunks
        if ctx.delegate is not None:
            params = sample.request.params()
            compute = delegated(ctx.delegate, CERTIFIED_RADII, params, ctx.deadline)
            wave = cluster_wave(ctx)
        else:
            certification = Certification(sample, table)
            compute = lambda chunks: [certification.chunk(c) for c in chunks]  # noqa: E731
            wave = 1
        run = map_chunks(
            ChunkPlan(rows, CERTIFY_CHUNK_ROWS, wave, stop_at, "rows certified"),
            compute, progress=ctx.progress, check_budget=ctx.check_budget,
        )
        found = np.concatenate([np.empty(0), *(decode_radii(v) for v in run.values)])
        if len(found) != min(len(run.values) * CERTIFY_CHUNK_ROWS, rows):
            raise ValueError(f"{len(found)} certified radii for {len(run.values)} chunks")
        certified = np.zeros(rows)
        certified[: len(found)] = found
        if run.scaled_down is not None:
            ctx.metrics["scaled_down"] = (
                f"{run.scaled_down} (half its budget); the rest count as uncertified (radius 0)"
            )
            ctx.progress(str(ctx.metrics["scaled_down"]))
        return certified

    @staticmethod
    def _judge_range(
        ctx: RuleContext,
        sample: AttackSample,
        threat: ThreatModel,
        lower: Interval,
        upper: Interval,
    ) -> Iterator[Finding]:
        """The truth lies between the certified and the attack share: the attack's side of
        the range decides a weakness, the certified side alone only says it cannot be proven.
        """
        span = (
            f"between {lower.estimate:.0%} (certified) and {upper.estimate:.0%} (attack) of "
            f"correct decisions survive changes of at most {threat.epsilon:g} robust spreads "
            "of each feature"
        )
        location = Location(ctx.subject.model.reference, pointer="linf")
        evidence: dict[str, JsonValue] = {
            "epsilon": threat.epsilon,
            "certified": lower.as_metric(),
            "attack": upper.as_metric(),
        }
        weakness = _judge(upper, ctx)
        if weakness is not None:
            yield ctx.finding(
                key="linf",
                title="Decisions flip under small realistic perturbations",
                message=f"{span}; even the attack's share is under the threshold",
                severity=cap(weakness, threat.stated, sample.task, ctx),
                location=location,
                evidence=evidence,
            )
            return
        judged = lower.high if ctx.option_bool("use_bound") else lower.estimate
        if judged < ctx.option_float("certified_below"):
            yield ctx.finding(
                key="linf",
                title="Robustness cannot be certified at ε",
                message=f"{span}; the certified share is the guarantee",
                location=location,
                evidence=evidence,
            )


class NoiseStability(Rule):
    """Noise stability.

    **What it checks**: how often the model's decision changes when each row's features are
    nudged at random by at most ``noise`` robust spreads (uniform draws, realised like every
    perturbation: in range, integers rounded, frozen features untouched). Reports the flip
    rate over all draws and the share of rows with at least one flip, with its 95% interval.
    Regressors: a draw flips when the prediction moves more than the tolerance (half the
    holdout RMSE by default), and a regressor's finding is at most medium unless
    ``threshold`` is stated. Needs no labels and no attack: cheap, and always on.

    **Why it matters**: real inputs carry measurement noise, rounding and typos. A model whose
    answer changes under noise this small gives different people with the same profile
    different outcomes, and its accuracy on clean data overstates its accuracy in production.

    **How to fix**: smooth the decision function (regularise, average more trees, calibrate),
    bin or round noisy features before training, and check the rows that flip: they sit on a
    decision boundary the training data does not support.

    **Options**: ``noise`` (0.05) the largest change per feature, in robust spreads;
    ``draws`` (20) per row; ``samples``, ``immutable``, ``categorical``, ``tolerance``,
    ``threshold`` as for MLA201; severity on the share of unstable rows: ``medium_above``
    (0.05), ``high_above`` (0.2), judged on the interval's lower bound while ``use_bound`` is
    true.
    """

    meta = RuleMeta(
        id="MLA204",
        name="Noise stability",
        family=Family.ROBUSTNESS,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.MODEL, Requirement.DATA}),
        options=(
            *_REALISM,
            RuleOption(
                "noise", 0.05, "largest random change per feature, in robust spreads of it",
                kind=OptionKind.NUMBER, minimum=0, exclusive_minimum=True,
            ),
            _count("draws", 20, "random perturbations per row", 1),
            _share("medium_above", 0.05, "medium when more than this share of rows is unstable"),
            _share("high_above", 0.2, "high when more than this share of rows is unstable"),
            _USE_BOUND,
        ),
        controls=RELIABILITY,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        sample = prepare(ctx, against_labels=False)
        ctx.metrics.update(clean_metrics(sample))
        noise = ctx.option_float("noise")
        draws = ctx.option_int("draws")
        oracle = sample.oracle(ctx.model)
        rows = np.repeat(np.arange(len(sample.frame)), draws)
        origin = sample.space.to_unit(sample.frame)[rows]
        shift = ctx.rng().uniform(-noise, noise, size=origin.shape)
        points = sample.space.realise(origin + shift)
        flips = oracle.adversarial(rows, points, cached=False).reshape(-1, draws)
        unstable = clopper_pearson(int(flips.any(axis=1).sum()), len(flips))
        ctx.metrics.update(
            {
                "noise": noise,
                "draws": draws,
                "flip_rate": round(float(flips.mean()), 6),
                "unstable_rows": unstable.as_metric(),
            }
        )
        judged = unstable.low if ctx.option_bool("use_bound") else unstable.estimate
        severity = (
            Severity.HIGH
            if judged > ctx.option_float("high_above")
            else Severity.MEDIUM
            if judged > ctx.option_float("medium_above")
            else None
        )
        if severity is not None:
            # Noise is the user's number, the output change that counts for a regressor is not.
            yield ctx.finding(
                key="noise",
                title="Decisions change under small random noise",
                message=(
                    f"{unstable.estimate:.0%} of rows (95% CI {unstable.low:.0%}-"
                    f"{unstable.high:.0%}) change their prediction under random changes of at "
                    f"most {noise:g} robust spreads of each feature; {flips.mean():.1%} of all "
                    "draws flip"
                ),
                severity=cap(severity, True, sample.task, ctx),
                location=Location(ctx.subject.model.reference, pointer="noise"),
                evidence={"noise": noise, "unstable_rows": unstable.as_metric()},
            )


_TEXT_PROFILE_QUERIES: Mapping[str, int] = {"quick": 300, "standard": 1000, "thorough": 5000}
DEFAULT_WORD_SHARE = 0.1


class TextEvasion(Rule):
    """Text perturbation evasion.

    **What it checks**: for models that read text (a scikit-learn pipeline that starts with a
    ``CountVectorizer``, ``TfidfVectorizer`` or ``HashingVectorizer``, an ONNX model with a
    string input, a Hugging Face sequence classifier), whether changing a few words of a
    correctly classified text flips the decision. Each word may become a typo (neighbouring
    letters swapped, a letter deleted, a neighbouring key inserted or struck instead) or a
    synonym from mlaudit's bundled lexicon. A greedy search ranks the words by leave-one-out
    importance (how much the true class's margin drops without the word), then changes them
    most important first, each into the variant that brings the decision closest to flipping,
    every step one batched query for all texts; a flip counts only once the model's own
    ``predict`` confirms it. The attacker's budget is a share of a text's words, and always at
    least one word. Reported, as for MLA201: clean accuracy, attack success rate, robust
    accuracy at every share of the grid with 95% Clopper-Pearson intervals, the words a flip
    needed, and the queries spent. A finding when the share of correct decisions that survives
    ``word_share`` is under ``medium_below`` (medium) or ``high_below`` (high), at most medium
    unless ``word_share`` is stated. Tabular models are skipped (MLA201 attacks them), and so
    are regressors.

    **Why it matters**: anyone who can send text to the model can misspell or rephrase: a spam,
    toxicity or fraud filter that lets a message through once "scam" is written "scma" or
    "bad" becomes "lousy" is evaded by its users within a day, and is brittle against the
    honest typos of real text.

    **How to fix**: add character n-gram features (``analyzer="char_wb"``) beside or instead
    of whole words, so a typo changes few features; train on augmented text (typos and
    synonyms of the training rows); normalise spelling before the model; spread the decision
    over many words (stronger regularisation, a smaller C) so that no single word decides.

    **Options**: ``word_share`` (0: the default 0.1) the share of a text's words the attacker
    may change (at least one word) judged, and ``word_shares`` the robust-accuracy curve's
    grid; ``perturbations`` (``["typo", "synonym"]``); ``typos_per_word`` (6) typos drawn per
    word; ``samples`` (0: quick 50, standard 200, thorough 1000) texts attacked; ``queries``
    per text (0: quick 300, standard 1000, thorough 5000); severity: ``high_below`` (0.5),
    ``medium_below`` (0.8) on the share of correct decisions that survive, judged on the
    interval's upper bound while ``use_bound`` is true.
    """

    meta = RuleMeta(
        id="MLA205",
        name="Text perturbation evasion",
        family=Family.ROBUSTNESS,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.MODEL, Requirement.DATA, Requirement.LABELS}),
        options=(
            _share(
                "word_share", 0.0,
                f"share of a text's words the attacker may change, at least one word (0: the "
                f"default {DEFAULT_WORD_SHARE:g}, where a breach is at most medium)",
            ),
            RuleOption(
                "word_shares", [0.05, 0.1, 0.2, 0.3], "the word-share grid of the accuracy curve",
                kind=OptionKind.NUMBERS, minimum=0, exclusive_minimum=True, maximum=1,
                min_items=1,
            ),
            RuleOption(
                "perturbations", ["typo", "synonym"], "the word changes the attacker may make",
                kind=OptionKind.STRINGS, choices=("typo", "synonym"), min_items=1,
            ),
            _count("typos_per_word", 6, "typos of each word tried (drawn at random)", 0),
            _count(
                "samples", 0,
                "texts attacked; 0 takes the profile's (quick 50, standard 200, thorough 1000)",
                0,
            ),
            _count("queries", 0, "model queries per text; 0 takes the profile's", 0),
            *_SEVERITY,
        ),
        controls=EVASION,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        import pandas as pd

        from mlaudit.robustness.text import (
            Perturber,
            TextAttackSettings,
            greedy_text_attack,
            synonym_lexicon,
        )

        model = ctx.model
        assert model is not None
        if model.input_kind is not InputKind.TEXT:
            raise RuleSkipped("tabular input: MLA201 attacks it; MLA205 attacks text")
        if model.task is not Task.CLASSIFICATION or not model.classes:
            raise RuleSkipped("MLA205 attacks text classifiers; this model's task is "
                              f"{model.task.value}")
        assert model.feature_names is not None
        column = model.feature_names[0]
        texts, reference, clean, excluded = _text_sample(ctx, column)
        index = {label: k for k, label in enumerate(model.classes)}
        correct = np.flatnonzero(clean == reference)
        stated = ctx.option_float("word_share") > 0
        judged = ctx.option_float("word_share") or DEFAULT_WORD_SHARE
        grid = sorted({*ctx.option_floats("word_shares"), judged})
        budget = ctx.option_int("queries") or _TEXT_PROFILE_QUERIES[ctx.profile]
        kinds = tuple(ctx.option_strs("perturbations"))

        def frame(batch: list[str]) -> pd.DataFrame:
            return pd.DataFrame({column: batch})

        outcome = greedy_text_attack(
            [texts[k] for k in correct],
            np.array([index[reference[k]] for k in correct], dtype=np.int64),
            model.classes,
            TextAttackSettings(
                Perturber(kinds, ctx.option_int("typos_per_word")), max(grid), budget
            ),
            score=lambda batch: model.class_scores(frame(batch)),
            decide=lambda batch: model.predict(frame(batch)),
            rng=derived_rng(ctx.seed, "text-attack"),
            check_budget=ctx.check_budget,
        )
        radii = outcome.radii
        found = outcome.changed[np.isfinite(outcome.changed)]
        survival = retained(radii, judged)
        ctx.metrics.update(
            {
                "samples": len(texts),
                "excluded_rows": excluded,
                "text_column": column,
                "task": model.task.value,
                "clean_accuracy": clopper_pearson(len(correct), len(texts)).as_metric(),
                "attacked": len(correct),
                "perturbations": list(kinds),
                "lexicon_words": len(synonym_lexicon()) if "synonym" in kinds else 0,
                "word_share": judged,
                "word_share_unit": "share of a text's words changed, at least one word",
                "threat_model": "configured" if stated else "default",
                "search": "greedy by leave-one-out word importance, guided by "
                + ("class scores" if outcome.scored else "labels alone"),
                "success_rate": (
                    clopper_pearson(len(found), len(radii)).as_metric() if len(radii) else None
                ),
                "robust_accuracy": robust_curve(radii, len(texts), grid),
                "survival_at_word_share": survival.as_metric() if survival else None,
                "words_changed": {
                    "found": len(found),
                    "median": float(np.median(found)) if len(found) else None,
                    "counts": _word_counts(found),
                },
                "queries_per_text": budget,
                "queries": {
                    "total": int(outcome.queries.sum()),
                    "median": float(np.median(outcome.queries)) if len(radii) else None,
                },
                "query_budget_exhausted": int(outcome.exhausted.sum()),
                "model_calls": outcome.calls,
            }
        )
        if survival is None:
            return
        severity = _judge(survival, ctx)
        if severity is None:
            return
        judged_severity = cap(severity, stated, Task.CLASSIFICATION, ctx)
        default = (
            "" if judged_severity is severity
            else f"; at most {judged_severity.value} under the default threat model (state "
            "word_share to judge your own)"
        )
        yield ctx.finding(
            key="text",
            title="Decisions flip under a few changed words",
            message=(
                f"changing at most {judged:.0%} of a text's words (at least one) with "
                f"{' and '.join(kinds)} changes flipped {1 - survival.estimate:.0%} of the "
                f"correct decisions (95% CI of the share that survives: {survival.low:.0%}-"
                f"{survival.high:.0%}){default}"
            ),
            severity=judged_severity,
            location=Location(ctx.subject.model.reference, pointer="word-share"),
            evidence={"word_share": judged, "survival": survival.as_metric()},
        )


def _text_sample(
    ctx: RuleContext, column: str
) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """The texts attacked (drawn as MLA201 draws its rows), their labels, the model's clean
    decisions, and how many rows could not be attacked (no label, or no text)."""

    model, sample = ctx.model, ctx.subject.sample
    assert model is not None
    assert sample is not None
    features = model.select_features(sample.features)
    labels = sample.labels
    assert labels is not None
    text = features[column]
    usable = labels.notna().to_numpy() & text.map(lambda v: isinstance(v, str) and bool(
        v.strip()
    )).to_numpy(dtype=bool)
    candidates = np.flatnonzero(usable)
    if len(candidates) == 0:

        raise RuleSkipped(f"no sample row has both a label and a text in {column!r}")
    chosen = draw_rows(ctx, candidates)
    frame = features.iloc[chosen].reset_index(drop=True)
    clean = np.asarray(model.predict(frame)).ravel()
    texts = [str(t) for t in frame[column]]
    return texts, labels.to_numpy()[chosen], clean, len(features) - len(candidates)


def _word_counts(changed: np.ndarray) -> dict[str, JsonValue]:
    """How many flips needed 1, 2, 3, 4 and 5 or more changed words."""
    counts: dict[str, JsonValue] = {str(n): int(np.sum(changed == n)) for n in range(1, 5)}
    counts["5+"] = int(np.sum(changed >= 5))
    return counts
