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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.stats import norm

from mlaudit.privacy.attacks import AttackScores
from mlaudit.privacy.evaluation import MembershipData
from mlaudit.subject.model_info import LoadedModel

PROFILE_REFERENCES = {"quick": 4, "standard": 8, "thorough": 32}
PER_EXAMPLE_VARIANCE_MIN = 16
_MIN_CLIP = 1e-12
_MIN_STD = 1e-6


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
    """Which pool rows each reference trains on, and each reference's random seed."""

    keep: np.ndarray
    seeds: tuple[int, ...]


def plan_references(count: int, pool_size: int, rng: np.random.Generator) -> ReferencePlan:
    # Each column of ``order`` is a permutation of 0..count-1, so every row lands in exactly
    # count // 2 training sets.
    order = rng.random((count, pool_size)).argsort(axis=0)
    seeds = tuple(int(s) for s in rng.integers(0, 2**31 - 1, size=count))
    return ReferencePlan(order < count // 2, seeds)


def reference_probabilities(
    model: LoadedModel,
    data: MembershipData,
    plan: ReferencePlan,
    *,
    n_jobs: int,
    check_budget: Callable[[], None],
) -> np.ndarray:
    """True-class probability of every evaluation row under every reference (k x rows)."""
    # Fitted the way the audited model was: on a DataFrame if it knows its columns by name.
    features: pd.DataFrame | np.ndarray = (
        data.pool if model.feature_names is not None else data.pool.to_numpy()
    )
    labels = np.asarray(data.classes, dtype=object)[data.pool_classes]
    jobs = (
        delayed(_fit_and_score)(
            model.estimator,
            features=_rows(features, np.flatnonzero(keep)),
            labels=_homogeneous(labels[keep]),
            targets=_rows(features, data.targets),
            target_labels=labels[data.targets].tolist(),
            seed=seed,
        )
        for keep, seed in zip(plan.keep, plan.seeds, strict=True)
    )
    rows = []
    for result in Parallel(n_jobs=n_jobs, return_as="generator")(jobs):
        rows.append(result)
        check_budget()
    return np.vstack(rows)


def _rows(features: pd.DataFrame | np.ndarray, index: np.ndarray) -> pd.DataFrame | np.ndarray:
    return features.iloc[index] if isinstance(features, pd.DataFrame) else features[index]


def _homogeneous(labels: np.ndarray) -> np.ndarray:
    """Object arrays of numbers back to a numeric dtype, as the estimator was fitted on."""
    return np.asarray(labels.tolist())


def _fit_and_score(
    estimator: Any,
    *,
    features: Any,
    labels: np.ndarray,
    targets: Any,
    target_labels: list[object],
    seed: int,
) -> np.ndarray:
    from sklearn.base import clone

    reference = clone(estimator)
    # Fresh seeds: references sharing the audited model's seed would share its randomness
    # (bootstrap draws, feature subsets), not only its hyperparameters, and all be alike.
    seeds = {
        name: seed
        for name in reference.get_params(deep=True)
        if name == "random_state" or name.endswith("__random_state")
    }
    reference.set_params(**seeds)
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
