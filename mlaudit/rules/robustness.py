"""MLA2xx: how easily small, realistic input changes flip the model's decisions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from mlaudit.controls import EVASION, RELIABILITY
from mlaudit.errors import ConfigError
from mlaudit.findings import Finding, JsonValue, Location, Severity
from mlaudit.model import Task
from mlaudit.robustness.sample import (
    PROFILE_QUERIES,
    AttackSample,
    float_list,
    perturbation_summary,
    prepare,
    retained,
    robust_curve,
)
from mlaudit.robustness.space import distance
from mlaudit.rules.base import Family, Requirement, Rule, RuleContext, RuleMeta, RuleOption
from mlaudit.stats import Interval, clopper_pearson

NORMS = ("linf", "l2")
NORM_NAMES = {"linf": "L∞", "l2": "L2 (root mean square)"}

_REALISM = (
    RuleOption("immutable", [], "features the attacker cannot change (never perturbed)"),
    RuleOption("categorical", [], "numeric features that encode categories (never perturbed)"),
    RuleOption(
        "samples", 0, "rows attacked; 0 takes the profile's (quick 50, standard 200, thorough 1000)"
    ),
    RuleOption(
        "tolerance",
        0.1,
        "regressors: an output moving more than this share of the "
        "outputs' standard deviation counts as flipped",
    ),
)
_THRESHOLDS = (
    RuleOption(
        "epsilon",
        0.05,
        "the perturbation budget judged, as a share of each feature's observed range",
    ),
    RuleOption("epsilons", [0.01, 0.02, 0.05, 0.1, 0.2], "the ε grid of the accuracy curve"),
    RuleOption("high_below", 0.5, "high when under this share of correct decisions survives ε"),
    RuleOption("medium_below", 0.8, "medium when under this share survives ε"),
    RuleOption(
        "use_bound",
        True,
        "judge the upper bound of the 95% interval (a finding only "
        "when the weakness is statistically clear) instead of the estimate",
    ),
)


def _judge(survival: Interval, ctx: RuleContext) -> Severity | None:
    value = survival.high if ctx.options["use_bound"] else survival.estimate
    if value < ctx.number("high_below"):
        return Severity.HIGH
    if value < ctx.number("medium_below"):
        return Severity.MEDIUM
    return None


def _norms(ctx: RuleContext) -> list[str]:
    chosen = ctx.strings("norms")
    unknown = sorted(set(chosen) - set(NORMS))
    if unknown or not chosen:
        raise ConfigError(f"option norms must list some of {', '.join(NORMS)}")
    return chosen


def _grid_radii(flips: Mapping[float, np.ndarray], grid: list[float]) -> np.ndarray:
    radii = np.full(len(next(iter(flips.values()))), np.inf)
    for eps in sorted(grid, reverse=True):
        radii[flips[eps]] = eps
    return radii


def _evasion_finding(
    ctx: RuleContext, sample: AttackSample, key: str, survival: Interval, attack: str
) -> Iterator[Finding]:
    severity = _judge(survival, ctx)
    if severity is None:
        return
    epsilon = ctx.number("epsilon")
    flipped = "moved beyond the tolerance" if sample.task is Task.REGRESSION else "flipped"
    yield ctx.finding(
        key=key,
        title="Decisions flip under small realistic perturbations",
        message=(
            f"{attack} {flipped} {1 - survival.estimate:.0%} of the "
            f"{'rows' if sample.task is Task.REGRESSION else 'correct decisions'} with changes "
            f"of at most {epsilon:g} of each feature's observed range "
            f"(95% CI of the share that survives: {survival.low:.0%}-{survival.high:.0%})"
        ),
        severity=severity,
        location=Location(ctx.subject.model.reference, pointer=key),
        evidence={"epsilon": epsilon, "survival": survival.as_metric()},
    )


class BlackBoxEvasion(Rule):
    """Black-box evasion (decision-based attack).

    **What it checks**: how far the audited rows must be moved before the model's decision
    changes, using only its ``predict``, so it covers every model mlaudit can run (scikit-learn,
    ONNX, XGBoost, LightGBM, PyTorch, entry points). A batched HopSkipJump attack (ART's
    algorithm, every sample in one model call per step) searches for the smallest perturbation
    that flips each correctly classified row, under L∞ and L2 (root mean square) on features
    scaled by the ranges seen in the data. Perturbations stay inside the observed ranges,
    integer features stay integers, and features configured as immutable or categorical are
    never changed. Reported: clean accuracy, attack success rate within the query budget, robust
    accuracy at every ε of the grid with 95% intervals, the median and 10th percentile of the
    smallest flipping perturbations with a histogram, and queries used. Regressors: a row counts
    as flipped when its prediction moves more than the tolerance.

    **Why it matters**: a model whose decisions flip when an applicant changes their stated
    income by 2% can be gamed by anyone who can query it, and is brittle against honest noise.
    The attack finds an upper bound on the robust radius: robustness is at most what it reports.

    **How to fix**: train with adversarial or noise augmentation, regularise (shallower trees,
    more leaves' samples, smaller C), drop or coarsen features that decide alone, and for tree
    ensembles compare with MLA203's certified bound. Mark features an applicant cannot change
    as ``immutable`` so the number reflects real threats.

    **Options**: ``epsilon`` (0.05) the budget judged and ``epsilons`` the curve's grid, as
    shares of each feature's range; ``norms`` (``["linf", "l2"]``); ``queries`` per row (0: the
    profile's, quick 500, standard 2000, thorough 10000); ``samples`` (0: quick 50, standard
    200, thorough 1000); ``immutable`` and ``categorical`` feature lists; ``tolerance`` for
    regressors (0.1 of the outputs' standard deviation); severity: ``high_below`` (0.5),
    ``medium_below`` (0.8) on the share of correct decisions that survive ε, judged on the
    interval's upper bound while ``use_bound`` is true.
    """

    meta = RuleMeta(
        id="MLA201",
        name="Black-box evasion",
        family=Family.ROBUSTNESS,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.MODEL, Requirement.DATA, Requirement.LABELS}),
        options=(
            *_REALISM,
            *_THRESHOLDS,
            RuleOption("norms", list(NORMS), "the norms attacked: linf, l2"),
            RuleOption("queries", 0, "model queries per row; 0 takes the profile's"),
        ),
        controls=EVASION,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        sample = prepare(ctx)
        ctx.metrics.update(sample.clean_metrics())
        budget = int(ctx.number("queries")) or PROFILE_QUERIES[ctx.profile]
        epsilon = ctx.number("epsilon")
        grid = float_list(ctx, "epsilons")
        oracle = sample.oracle(ctx)
        attacked = sample.correct
        per_norm: dict[str, JsonValue] = {}
        rng = ctx.rng()
        for norm in _norms(ctx):
            before = int(oracle.queries.sum())
            radii = sample.smallest_flips(ctx, oracle, norm, budget, rng).distance
            survival = retained(radii, epsilon)
            per_norm[norm] = {
                "attacked": len(attacked),
                "success_rate": (
                    clopper_pearson(int(np.isfinite(radii).sum()), len(radii)).as_metric()
                    if len(radii)
                    else None
                ),
                "robust_accuracy": robust_curve(radii, len(sample.frame), grid),
                "survival_at_epsilon": survival.as_metric() if survival else None,
                "perturbation": perturbation_summary(radii),
                "queries": int(oracle.queries.sum()) - before,
            }
            if survival is not None:
                yield from _evasion_finding(
                    ctx, sample, norm, survival, f"A black-box attack ({NORM_NAMES[norm]})"
                )
        ctx.metrics.update(
            {
                "epsilon": epsilon,
                "queries_per_row": budget,
                "model_calls": oracle.calls,
                "norms": per_norm,
            }
        )


class GradientEvasion(Rule):
    """Gradient evasion (FGSM and PGD through ART).

    **What it checks**: for models that expose gradients — PyTorch modules, scikit-learn
    ``LogisticRegression``, ``SVC`` and ``LinearSVC``, alone or after ``StandardScaler`` /
    ``MinMaxScaler`` — ART's Fast Gradient Sign Method and Projected Gradient Descent at every
    ε of the grid, under L∞ and L2, in the same scaled feature space as MLA201 (frozen
    features masked, integers rounded afterwards). Every adversarial example is realised and
    re-checked against the model; only real flips count. Other models are skipped with the
    reason (MLA201 covers them without gradients); regressors are left to MLA201 and MLA204.

    **Why it matters**: with white-box access, gradients find small flipping perturbations in
    a few steps; a linear model's robustness is set by its weights, and this measures it
    directly rather than by search.

    **How to fix**: regularise (smaller C, stronger L2), standardise features so no single one
    dominates, train with adversarial examples (ART's ``AdversarialTrainer``), and declare
    features an attacker cannot change ``immutable``.

    **Options**: ``epsilon``, ``epsilons``, ``norms``, ``samples``, ``immutable``,
    ``categorical``, ``high_below``, ``medium_below`` and ``use_bound`` as for MLA201 (judged on
    the stronger of the two attacks); ``iterations`` (20) PGD steps.
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
            RuleOption("norms", list(NORMS), "the norms attacked: linf, l2"),
            RuleOption("iterations", 20, "PGD iterations"),
        ),
        controls=EVASION,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from mlaudit.robustness.gradient import NoGradients, evade, gradient_model
        from mlaudit.rules.base import RuleSkipped

        assert ctx.model is not None
        if ctx.model.task is not Task.CLASSIFICATION:
            raise RuleSkipped(
                "gradient evasion covers classifiers; MLA201 and MLA204 measure regressors"
            )
        sample = prepare(ctx)
        try:
            wrapped = gradient_model(ctx.model, sample.space)
        except NoGradients as reason:
            raise RuleSkipped(str(reason)) from None
        ctx.metrics.update(sample.clean_metrics())
        epsilon = ctx.number("epsilon")
        grid = sorted({*float_list(ctx, "epsilons"), epsilon})
        iterations = int(ctx.number("iterations"))
        oracle = sample.oracle(ctx)
        attacked = sample.correct
        classes = list(ctx.model.classes or ())
        labels = np.array([classes.index(label) for label in sample.reference[attacked]])
        vectors = wrapped.to_input(sample.frame.to_numpy(dtype=np.float64)[attacked])
        mutable = list(sample.space.mutable)
        origin = vectors[:, mutable]
        per_norm: dict[str, JsonValue] = {}
        for norm in _norms(ctx):
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
                    unit = sample.space.realise(adversarial[:, mutable])
                    # Rounding integers can carry a point past ε; such a flip does not count.
                    within = distance(unit - origin, norm) <= eps + 1e-9
                    flipped_at[method][eps] = oracle.adversarial(attacked, unit) & within
            # The smallest ε of the grid at which each row flipped: an attacker allowed ε may
            # use any smaller perturbation, so a row flipped at 0.02 counts as flipped at 0.05.
            radii = {method: _grid_radii(flips, grid) for method, flips in flipped_at.items()}
            curves: dict[str, JsonValue] = {
                method: robust_curve(r, len(sample.frame), grid) for method, r in radii.items()
            }
            survival = retained(np.minimum(radii["fgsm"], radii["pgd"]), epsilon)
            if survival is not None:
                curves["survival_at_epsilon"] = survival.as_metric()
                yield from _evasion_finding(
                    ctx, sample, norm, survival, f"FGSM/PGD ({NORM_NAMES[norm]})"
                )
            per_norm[norm] = curves
        ctx.metrics.update(
            {"epsilon": epsilon, "robust_accuracy": per_norm, "attacked": len(attacked)}
        )


class TreeEnsembleVerification(Rule):
    """Tree-ensemble robustness verification.

    **What it checks**: for random forests, extra trees, gradient boosting (scikit-learn),
    XGBoost and LightGBM models, a certified lower bound on each row's robust radius under L∞:
    within it, no perturbation changes the decision. mlaudit reads the leaves of every tree as
    boxes and bounds the worst reachable combination tree by tree (a sound relaxation), with
    immutable features held inside their box; the extracted trees are checked to reproduce the
    model's own scores first. Beside it, MLA201's attack gives the upper bound, so robust
    accuracy at ε is reported as "between a and b", with the time per row.

    **Why it matters**: an attack can only show that a model is weak; it cannot show that it
    is strong. The certified bound is the part of the robustness claim that holds whatever the
    attacker does, and the gap between the bounds says how much of the answer is still open.

    **How to fix**: a wide gap is not a weakness in itself; a low certified share at ε with a
    high attack share says the model may be robust but cannot be shown to be. Smaller, shallower
    ensembles verify more tightly; robust training for trees (e.g. Chen et al.'s robust
    splitting) raises both bounds.

    **Options**: ``epsilon``, ``epsilons``, ``samples``, ``immutable``, ``categorical``,
    ``tolerance`` and ``queries`` as for MLA201; ``certified_below`` (0.5): a low finding when
    the certified share of correct decisions surviving ε (its upper bound while ``use_bound``)
    is under it.
    """

    meta = RuleMeta(
        id="MLA203",
        name="Tree-ensemble verification",
        family=Family.ROBUSTNESS,
        severity=Severity.LOW,
        requires=frozenset({Requirement.MODEL, Requirement.DATA, Requirement.LABELS}),
        options=(
            *_REALISM,
            *_THRESHOLDS[:2],
            _THRESHOLDS[4],
            RuleOption(
                "certified_below",
                0.5,
                "low when under this share of correct decisions is certified to survive ε",
            ),
            RuleOption("queries", 0, "attack queries per row; 0 takes the profile's"),
        ),
        controls=EVASION,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from mlaudit.robustness.trees import UnsupportedEnsemble, Verifier, leaf_table
        from mlaudit.rules.base import RuleSkipped

        assert ctx.model is not None
        sample = prepare(ctx)
        try:
            table = leaf_table(ctx.model.estimator, sample.frame)
        except UnsupportedEnsemble as reason:
            raise RuleSkipped(str(reason)) from None
        ctx.metrics.update(sample.clean_metrics())
        epsilon = ctx.number("epsilon")
        grid = sorted({*float_list(ctx, "epsilons"), epsilon})
        attacked = sample.correct
        verifier = Verifier(table, sample.space, "linf")
        raw = sample.frame.to_numpy(dtype=np.float64)
        classes = list(table.classes or ())
        certified = np.zeros(len(attacked))
        for position, row in enumerate(attacked):
            ctx.check_budget()
            if sample.task is Task.REGRESSION:
                certified[position] = verifier.radius(
                    raw[row], None, reference=float(sample.clean[row]), tolerance=sample.tolerance
                )
            else:
                certified[position] = verifier.radius(raw[row], classes.index(sample.clean[row]))
        budget = int(ctx.number("queries")) or PROFILE_QUERIES[ctx.profile]
        outcome = sample.smallest_flips(ctx, sample.oracle(ctx), "linf", budget, ctx.rng())
        total = len(sample.frame)
        ctx.metrics.update(
            {
                "epsilon": epsilon,
                "norm": "linf",
                "trees": table.trees,
                "leaves": len(table.values),
                "certified_radius": perturbation_summary(np.where(certified > 0, certified, 0.0)),
                "attack_radius": perturbation_summary(outcome.distance),
                "robust_accuracy": {
                    "certified": robust_curve(certified, total, grid),
                    "attack": robust_curve(outcome.distance, total, grid),
                },
            }
        )
        survival = retained(certified, epsilon)
        upper = retained(outcome.distance, epsilon)
        if survival is None or upper is None:
            return
        judged = survival.high if ctx.options["use_bound"] else survival.estimate
        if judged < ctx.number("certified_below"):
            yield ctx.finding(
                key="linf",
                title="Robustness cannot be certified at ε",
                message=(
                    f"between {survival.estimate:.0%} (certified) and {upper.estimate:.0%} "
                    f"(attack) of correct decisions survive changes of at most {epsilon:g} of "
                    "each feature's observed range; the certified share is the guarantee"
                ),
                location=Location(ctx.subject.model.reference, pointer="linf"),
                evidence={"certified": survival.as_metric(), "attack": upper.as_metric()},
            )


class NoiseStability(Rule):
    """Noise stability.

    **What it checks**: how often the model's decision changes when each row's features are
    nudged at random by at most ``noise`` of their observed range (uniform draws, realised
    like every perturbation: in range, integers rounded, frozen features untouched). Reports
    the flip rate over all draws and the share of rows with at least one flip, with its 95%
    interval. Regressors: a draw flips when the prediction moves more than the tolerance. Needs
    no labels and no attack: cheap, and always on.

    **Why it matters**: real inputs carry measurement noise, rounding and typos. A model whose
    answer changes under noise this small gives different people with the same profile
    different outcomes, and its accuracy on clean data overstates its accuracy in production.

    **How to fix**: smooth the decision function (regularise, average more trees, calibrate),
    bin or round noisy features before training, and check the rows that flip: they sit on a
    decision boundary the training data does not support.

    **Options**: ``noise`` (0.01) the largest change per feature, as a share of its range;
    ``draws`` (20) per row; ``samples``, ``immutable``, ``categorical``, ``tolerance`` as for
    MLA201; severity on the share of unstable rows: ``medium_above`` (0.05), ``high_above``
    (0.2), judged on the interval's lower bound while ``use_bound`` is true.
    """

    meta = RuleMeta(
        id="MLA204",
        name="Noise stability",
        family=Family.ROBUSTNESS,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.MODEL, Requirement.DATA}),
        options=(
            *_REALISM,
            RuleOption("noise", 0.01, "largest random change per feature, as a share of its range"),
            RuleOption("draws", 20, "random perturbations per row"),
            RuleOption(
                "medium_above", 0.05, "medium when more than this share of rows is unstable"
            ),
            RuleOption("high_above", 0.2, "high when more than this share of rows is unstable"),
            _THRESHOLDS[4],
        ),
        controls=RELIABILITY,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        sample = prepare(ctx, against_labels=False)
        ctx.metrics.update(sample.clean_metrics())
        noise = ctx.number("noise")
        draws = int(ctx.number("draws"))
        oracle = sample.oracle(ctx)
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
        judged = unstable.low if ctx.options["use_bound"] else unstable.estimate
        severity = (
            Severity.HIGH
            if judged > ctx.number("high_above")
            else Severity.MEDIUM
            if judged > ctx.number("medium_above")
            else None
        )
        if severity is not None:
            yield ctx.finding(
                key="noise",
                title="Decisions change under small random noise",
                message=(
                    f"{unstable.estimate:.0%} of rows (95% CI {unstable.low:.0%}-"
                    f"{unstable.high:.0%}) change their prediction under random changes of at "
                    f"most {noise:g} of each feature's range; {flips.mean():.1%} of all draws flip"
                ),
                severity=severity,
                location=Location(ctx.subject.model.reference, pointer="noise"),
                evidence={"noise": noise, "unstable_rows": unstable.as_metric()},
            )
