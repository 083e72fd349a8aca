"""Reference-model membership inference: LiRA (online and offline) and RMIA.

Reference models are clones of the audited estimator (same hyperparameters, fresh random
seeds) fitted on random halves of the supplied rows (train and holdout together), following
Carlini et al.'s design: every row is in the training set of exactly half of the references,
so every evaluated row has "in" and "out" observations even with four references. Each
reference then reports its probability for the true class of every evaluated row.

From those observations, for every evaluated row ``x`` with audited-model confidence ``p``:

* ``lira-online`` (Carlini et al. 2022): the likelihood ratio of ``logit(p)`` under Gaussians
  fitted to the "in" and the "out" observations. With fewer than
  ``PER_EXAMPLE_VARIANCE_MIN`` observations per side the variances are global (pooled over all
  rows), as the paper recommends for few references; the means are always per row.
* ``lira-offline``: how far ``logit(p)`` lies above the "out" Gaussian (a z-score), which uses
  only references that did not see ``x``.
* ``rmia`` (Zarifzadeh et al. 2024): ``p / mean(p over all references)``, the likelihood ratio
  of the audited model against the average reference. RMIA's comparison with population rows
  ``z`` (the fraction of ``z`` whose ratio ``x`` exceeds by a factor gamma) is a monotone
  function of this ratio, so it leaves the ROC, AUC and TPR at every FPR unchanged.

Training runs through :class:`joblib.Parallel` without a fixed backend, so a surrounding
``joblib.parallel_config(backend=...)`` (for example Dask) takes the work to a cluster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config
from scipy.stats import norm

from mlaudit.core.delegation import whole_param
from mlaudit.core.findings import JsonValue
from mlaudit.privacy.attacks import AttackScores
from mlaudit.privacy.evaluation import MembershipData, membership_data, privacy_rng
from mlaudit.subject.build import Subject
from mlaudit.subject.model_info import LoadedModel

PROFILE_REFERENCES = {"quick": 4, "standard": 8, "thorough": 32}
# Rows each reference trains on at most (None: half of every usable row, like the audited
# model). A reference's fit dominates the rule's cost and grows with its rows, so the profile
# caps them: on 100k-row data a standard scan fits 10k-row references, not 100k-row ones.
PROFILE_REFERENCE_ROWS: dict[str, int | None] = {"quick": 5000, "standard": 10000, "thorough": None}
PER_EXAMPLE_VARIANCE_MIN = 16
# What a rule keeps for scoring the attacks once its references are fitted (bootstrap
# intervals): the share of its budget, and at least this many seconds.
EVALUATION_RESERVE_SHARE = 0.15
EVALUATION_RESERVE_MIN_S = 2.0
_MIN_CLIP = 1e-12
_MIN_STD = 1e-6
# Parameters through which an estimator parallelises its own fit (scikit-learn and joblib
# style, XGBoost, CatBoost); HistGradientBoosting has none but runs OpenMP on every core.
_THREAD_PARAMETERS = ("n_jobs", "nthread", "thread_count")
_OPENMP_ESTIMATORS = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


def refit_obstacle(model: LoadedModel) -> str | None:
    """Why reference models cannot be fitted like the audited one, or ``None`` if they can."""
    from sklearn.base import BaseEstimator, clone

    estimator = model.estimator
    if not isinstance(estimator, BaseEstimator) or not callable(getattr(estimator, "fit", None)):
        return (
            "reference models need a refittable scikit-learn estimator or Pipeline; this model "
            f"is {type(estimator).__name__} ({model.framework})"
        )
    if model.probability_predictor is None:
        return "reference-model attacks need class probabilities; the model gives only labels"
    try:
        clone(estimator)
    except Exception as error:  # clone raises TypeError/RuntimeError for non-conforming params
        return f"the estimator cannot be cloned: {type(error).__name__}: {error}"
    return None


@dataclass(frozen=True, eq=False)
class ReferencePlan:
    """Which pool rows each reference trains on, and each reference's random seed.

    References come in complementary pairs over the reference pool: every pool row is in
    exactly one reference of each pair, so the first ``2 j`` references are a balanced design
    of their own, and a rule short of time can stop after any pair.
    """

    keep: np.ndarray
    seeds: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.seeds)

    @property
    def training_rows(self) -> int:
        return int(self.keep[0].sum()) if self.count else 0

    def first(self, count: int) -> ReferencePlan:
        return ReferencePlan(self.keep[:count], self.seeds[:count])

    def job(self, i: int) -> ReferenceJob:
        """Reference ``i``: its index, the pool rows it trains on and its seed."""
        return ReferenceJob(i, np.flatnonzero(self.keep[i]), self.seeds[i])


def plan_references(
    count: int,
    pool_size: int,
    rng: np.random.Generator,
    *,
    required: np.ndarray | None = None,
    max_training_rows: int | None = None,
) -> ReferencePlan:
    """``count`` references over the pool, in complementary pairs of random halves.

    With ``max_training_rows``, the halves are drawn from a reference pool of twice that many
    rows (never fewer than the ``required`` rows, the evaluated ones, which every pair splits):
    fewer rows per reference, the profile's cost cap.
    """
    members = np.arange(pool_size)
    if max_training_rows is not None and 2 * max_training_rows < pool_size:
        needed = np.unique(required) if required is not None else np.empty(0, dtype=np.int64)
        others = np.setdiff1d(members, needed, assume_unique=True)
        extra = max(2 * max_training_rows - len(needed), 0)
        members = np.sort(np.concatenate([needed, rng.choice(others, extra, replace=False)]))
    keep = np.zeros((count, pool_size), dtype=bool)
    half = len(members) // 2
    for first in range(0, count, 2):
        order = rng.permutation(members)
        keep[first, order[:half]] = True
        if first + 1 < count:
            keep[first + 1, order[half:]] = True
    seeds = tuple(int(s) for s in rng.integers(0, 2**31 - 1, size=count))
    return ReferencePlan(keep, seeds)


class ReferencesDoNotFit(Exception):
    """Not even one pair of references fits the rule's budget; the message says why."""


@dataclass(frozen=True, eq=False)
class ReferenceFits:
    """The fitted references' true-class probability of every evaluation row (fitted x rows),
    the plan they followed (cut to the references fitted), and what fitting cost."""

    plan: ReferencePlan
    probabilities: np.ndarray
    planned: int
    # Why fewer references than planned were fitted (the rule's budget), if so.
    scaled_down: str | None = None

    def metrics(self) -> dict[str, JsonValue]:
        found: dict[str, JsonValue] = {
            "references_planned": self.planned,
            "reference_training_rows": self.plan.training_rows,
        }
        if self.scaled_down is not None:
            found["scaled_down"] = self.scaled_down
        return found


@dataclass(frozen=True)
class ReferenceJob:
    """One reference to fit: its index in the plan, the pool rows it trains on, its seed."""

    index: int
    train_rows: np.ndarray
    seed: int


# Fits a batch of references and returns each one's true-class probabilities of the
# evaluation rows, in the batch's order: on local threads, or on a Dask cluster.
FitBatch = Callable[[Sequence[ReferenceJob]], list[np.ndarray]]


@dataclass(frozen=True)
class FitParallelism:
    """How references use the cores: ``at_once`` references fitted side by side, each with
    joblib's ``n_jobs`` set to ``jobs_each`` (``joblib.parallel_config``, which an estimator's
    ``n_jobs=None`` follows); ``explicit`` names the thread parameters the estimator set to a
    number of its own, which are set to ``jobs_each`` too."""

    at_once: int
    jobs_each: int
    explicit: tuple[str, ...] = ()


def parallel_fit_settings(estimator: Any, n_jobs: int) -> FitParallelism:
    """How to spend ``n_jobs`` cores: an estimator that parallelises its own fit (a thread
    parameter) fits one reference at a time on all of them; one that runs OpenMP on every
    core by itself (HistGradientBoosting) one at a time too, as several at once would
    oversubscribe; any other fits that many references at once, one core each."""
    params = estimator.get_params(deep=True)
    names = [name for name in params if name.rsplit("__", 1)[-1] in _THREAD_PARAMETERS]
    if names:
        # Only numbers the estimator was saved with are overridden: setting one where it
        # is None makes some estimators warn (LogisticRegression ignores n_jobs since 1.8).
        explicit = tuple(name for name in names if params[name] is not None)
        return FitParallelism(1, n_jobs, explicit)
    if _runs_openmp(estimator):
        return FitParallelism(1, 1)
    return FitParallelism(_cores(n_jobs), 1)


def _runs_openmp(estimator: Any) -> bool:
    parts = [estimator, *estimator.get_params(deep=True).values()]
    return any(type(part).__name__ in _OPENMP_ESTIMATORS for part in parts)


def _cores(n_jobs: int) -> int:
    # The cores this process may run on (taskset, cgroups' cpusets), not the machine's.
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1
    )
    return available if n_jobs < 0 else max(1, min(n_jobs, available))


def local_fit_batch(
    model: LoadedModel, data: MembershipData, parallelism: FitParallelism
) -> FitBatch:
    """Fit references on this machine, as ``parallelism`` says (joblib workers: threads in
    the isolated worker)."""
    features, labels = training_arrays(model, data)
    targets = _rows(features, data.targets)
    target_labels = labels[data.targets].tolist()

    def fit(batch: Sequence[ReferenceJob]) -> list[np.ndarray]:
        jobs = (
            delayed(fit_and_score)(
                model.estimator,
                features=_rows(features, job.train_rows),
                labels=_homogeneous(labels[job.train_rows]),
                targets=targets,
                target_labels=target_labels,
                seed=job.seed,
                parallelism=parallelism,
            )
            for job in batch
        )
        return list(Parallel(n_jobs=min(parallelism.at_once, len(batch)))(jobs))

    return fit


# The name under which reference fits are delegated to a cluster.
REFERENCE_FITS = "reference-fits"


@dataclass(frozen=True)
class ReferenceRequest:
    """What determines a set of references, in plain values: a cluster's task rebuilds the
    evaluation data and the plan from them exactly as the rule did (same seed, same rows)."""

    seed: int
    max_rows: int
    count: int
    max_training_rows: int | None
    # The estimator's explicit thread parameters, each set to the task's own thread count.
    thread_parameters: tuple[str, ...]

    def params(self, indices: Sequence[int]) -> dict[str, JsonValue]:
        return {
            "seed": self.seed, "max_rows": self.max_rows, "count": self.count,
            "max_training_rows": self.max_training_rows,
            "thread_parameters": list(self.thread_parameters), "indices": list(indices),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, JsonValue]) -> ReferenceRequest:
        rows, names = params["max_training_rows"], params["thread_parameters"]
        assert isinstance(names, list)
        return cls(
            whole_param(params, "seed"), whole_param(params, "max_rows"),
            whole_param(params, "count"),
            rows if isinstance(rows, int) else None, tuple(str(n) for n in names),
        )

    def plan(self, data: MembershipData) -> ReferencePlan:
        return plan_references(
            self.count, len(data.pool), privacy_rng(self.seed, "reference-models"),
            required=data.targets, max_training_rows=self.max_training_rows,
        )


def fit_planned_references(
    model: LoadedModel, subject: Subject, params: Mapping[str, JsonValue]
) -> JsonValue:
    """The references ``params["indices"]`` of the request in ``params``, fitted here (a
    cluster task): each one's true-class probabilities of the evaluation rows, as lists."""
    request = ReferenceRequest.from_params(params)
    threads, indices = whole_param(params, "threads"), params["indices"]
    assert isinstance(indices, list)
    data, plan = _planned(model, subject, request)
    fit = local_fit_batch(
        model, data, FitParallelism(1, threads, request.thread_parameters)
    )
    jobs = [plan.job(i) for i in indices if isinstance(i, int)]
    return [row.tolist() for row in fit(jobs)]


# The evaluation data and plan of the last request, in the process that serves a run's
# requests (a cluster's model session): its later batches reuse them instead of rebuilding
# them (seconds on 100,000 rows). One entry: a session serves one run, on one subject. The
# entry holds the model and subject it was built from, so their ids cannot be reused.
_LAST_PLAN: list[tuple[LoadedModel, Subject, ReferenceRequest, MembershipData, ReferencePlan]] = []


def _planned(
    model: LoadedModel, subject: Subject, request: ReferenceRequest
) -> tuple[MembershipData, ReferencePlan]:
    for known_model, known_subject, known_request, data, plan in _LAST_PLAN:
        if known_model is model and known_subject is subject and known_request == request:
            return data, plan
    data = membership_data(subject, model, request.seed, request.max_rows)
    plan = request.plan(data)
    _LAST_PLAN[:] = [(model, subject, request, data, plan)]
    return data, plan


def training_arrays(
    model: LoadedModel, data: MembershipData
) -> tuple[pd.DataFrame | np.ndarray, np.ndarray]:
    """The pool's features, as the audited model was fitted on them (a DataFrame if it
    knows its columns by name), and the pool's labels."""
    # The model's own input adapter where it has one: a text pipeline is fitted on a 1-D
    # array of texts, and fitted on a DataFrame of its text column it would learn the name.
    shaped = model.estimator_input(data.pool) if model.estimator_input is not None else None
    features: pd.DataFrame | np.ndarray = (
        shaped if isinstance(shaped, pd.DataFrame | np.ndarray)
        else data.pool if model.feature_names is not None else data.pool.to_numpy()
    )
    return features, np.asarray(data.classes, dtype=object)[data.pool_classes]


def reference_probabilities(
    plan: ReferencePlan,
    fit_batch: FitBatch,
    *,
    batch_size: int,
    deadline: float,
    budget_s: float,
    progress: Callable[[str], None],
    check_budget: Callable[[], None],
) -> ReferenceFits:
    """Fit the plan's references in batches, as many pairs as the rule's time allows.

    The cost is measured as it goes (the first batch times one fit) and projected before
    each further batch: a batch that would leave less than the evaluation's reserve of the
    budget is not started, and the references fitted so far (whole pairs, at least one)
    are used instead, with the reason recorded: a profile scales itself down rather than
    overrunning its budget.
    """
    reserve = max(EVALUATION_RESERVE_SHARE * budget_s, EVALUATION_RESERVE_MIN_S)
    rows: list[np.ndarray] = []
    spent = 0.0  # wall seconds spent fitting; spent / len(rows) is a reference's share
    scaled_down = None
    while len(rows) < plan.count:
        size = min(batch_size, plan.count - len(rows))
        if rows and spent / len(rows) * size > deadline - time.monotonic() - reserve:
            scaled_down = (
                f"fitted {len(rows) - len(rows) % 2} of {plan.count} reference models: at "
                f"{spent / len(rows):.1f} s each, the rest would overrun the rule's budget of "
                f"{budget_s:.0f} s"
            )
            break
        batch = [plan.job(i) for i in range(len(rows), len(rows) + size)]
        started = time.monotonic()
        rows.extend(fit_batch(batch))
        spent += time.monotonic() - started
        eta = spent / len(rows) * (plan.count - len(rows))
        progress(f"reference models fitted {len(rows)}/{plan.count}, ETA {eta:.0f} s")
        check_budget()
    fitted = len(rows) - len(rows) % 2 if scaled_down is not None else len(rows)
    if fitted < 2:
        raise ReferencesDoNotFit(
            f"one reference model takes {spent / max(len(rows), 1):.1f} s to fit on "
            f"{plan.training_rows} rows; two would overrun the rule's budget of {budget_s:.0f} s: "
            "raise budget_s, or lower reference_rows"
        )
    return ReferenceFits(plan.first(fitted), np.vstack(rows[:fitted]), plan.count, scaled_down)


def _rows(features: pd.DataFrame | np.ndarray, index: np.ndarray) -> pd.DataFrame | np.ndarray:
    return features.iloc[index] if isinstance(features, pd.DataFrame) else features[index]


def _homogeneous(labels: np.ndarray) -> np.ndarray:
    """Object arrays of numbers back to a numeric dtype, as the estimator was fitted on."""
    return np.asarray(labels.tolist())


def fit_and_score(
    estimator: Any,
    *,
    features: Any,
    labels: np.ndarray,
    targets: Any,
    target_labels: list[object],
    seed: int,
    parallelism: FitParallelism,
) -> np.ndarray:
    """Clone ``estimator``, fit it with ``seed`` and return its true-class probability of
    each target row."""
    from sklearn.base import clone

    reference = clone(estimator)
    # Fresh seeds: references sharing the audited model's seed would share its randomness
    # (bootstrap draws, feature subsets), not only its hyperparameters, and all be alike.
    seeds = {
        name: seed
        for name in reference.get_params(deep=True)
        if name == "random_state" or name.endswith("__random_state")
    }
    jobs = parallelism.jobs_each
    reference.set_params(**seeds, **dict.fromkeys(parallelism.explicit, jobs))
    with parallel_config(n_jobs=jobs):
        reference.fit(features, labels)
    probabilities = np.asarray(reference.predict_proba(targets), dtype=float)
    column = {c: j for j, c in enumerate(reference.classes_.tolist())}
    # A class absent from this reference's half of the rows has probability 0 under it.
    padded = np.concatenate([probabilities, np.zeros((len(target_labels), 1))], axis=1)
    index = np.array([column.get(label, -1) for label in target_labels], dtype=np.int64)
    return np.asarray(padded[np.arange(len(target_labels)), index], dtype=float)


def logit_clip(probabilities: np.ndarray) -> float:
    """Where to clip probabilities before taking logits: half the models' finest step.

    Probabilities of exactly 0 or 1 have infinite logits, and forests report them often: a
    forest of T grown trees speaks in multiples of 1/T, so 1 means "all trees agree" and is one
    step above 1 - 1/T. Clipping half a step beyond the finest level any model expresses (a
    continuity correction) keeps that order without letting a fixed, arbitrary clip (1e-4
    would sit ten logit units past 0.99) dominate the Gaussian fits. Models with continuous
    probabilities get a clip far below anything they output.
    """
    inner = probabilities[(probabilities > 0.0) & (probabilities < 1.0)]
    finest = float(np.minimum(inner, 1.0 - inner).min()) if inner.size else 0.5
    return max(finest / 2.0, _MIN_CLIP)


def logit(probability: np.ndarray, clip: float) -> np.ndarray:
    p = np.clip(probability, clip, 1.0 - clip)
    return np.asarray(np.log(p) - np.log1p(-p), dtype=float)


def _gaussian(observed: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and standard deviation of the observations selected by ``mask``."""
    counts = mask.sum(axis=0)
    mean = np.where(mask, observed, 0.0).sum(axis=0) / np.maximum(counts, 1)
    residuals = np.where(mask, observed - mean, 0.0)
    if counts.min() >= PER_EXAMPLE_VARIANCE_MIN:
        std = np.sqrt((residuals**2).sum(axis=0) / np.maximum(counts - 1, 1))
    else:
        std = np.full(mean.shape, np.sqrt((residuals**2).sum() / max(mask.sum() - 1, 1)))
    return mean, np.maximum(std, _MIN_STD)


def reference_attacks(
    target_probability: np.ndarray, references: np.ndarray, inside: np.ndarray
) -> list[AttackScores]:
    """LiRA online, LiRA offline and RMIA scores from one set of reference observations.

    ``references`` and ``inside`` are k x rows: each reference's true-class probability for
    each evaluation row, and whether the row was in that reference's training set.
    """
    clip = logit_clip(np.concatenate([references.ravel(), target_probability]))
    observed, target = logit(references, clip), logit(target_probability, clip)
    in_mean, in_std = _gaussian(observed, inside)
    out_mean, out_std = _gaussian(observed, ~inside)
    online = norm.logpdf(target, in_mean, in_std) - norm.logpdf(target, out_mean, out_std)
    offline = (target - out_mean) / out_std
    rmia = target_probability / np.maximum(references.mean(axis=0), np.finfo(float).tiny)
    return [
        AttackScores("lira-online", np.asarray(online, dtype=float)),
        AttackScores("lira-offline", np.asarray(offline, dtype=float)),
        AttackScores("rmia", np.asarray(rmia, dtype=float)),
    ]
