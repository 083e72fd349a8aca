"""Reference models: the in/out design, refitting, and the LiRA and RMIA scores."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.privacy.evaluation import membership_data
from mlaudit.privacy.reference import (
    FitParallelism,
    ReferencesDoNotFit,
    local_fit_batch,
    logit_clip,
    parallel_fit_settings,
    plan_references,
    reference_attacks,
    reference_probabilities,
    refit_obstacle,
)
from mlaudit.privacy.roc import auc
from tests.privacy.fixtures import TARGET, forest, noisy_frame, write_subject


def test_every_row_is_in_half_of_the_references() -> None:
    plan = plan_references(8, 500, np.random.default_rng(0))
    assert plan.keep.shape == (8, 500)
    assert (plan.keep.sum(axis=0) == 4).all()
    assert len(set(plan.seeds)) == 8
    # Complementary pairs: any first pairs are a balanced design of their own.
    assert (plan.first(2).keep.sum(axis=0) == 1).all()


def test_capped_references_train_on_fewer_rows_and_keep_every_evaluated_row() -> None:
    required = np.arange(0, 1000, 10)
    plan = plan_references(
        4, 1000, np.random.default_rng(0), required=required, max_training_rows=150
    )
    assert plan.training_rows == 150
    in_pool = plan.keep.any(axis=0)
    assert in_pool.sum() == 300
    assert in_pool[required].all()
    assert (plan.keep[:, in_pool].sum(axis=0) == 2).all()


def _fits(rows: int, seconds: float) -> list[np.ndarray]:
    import time

    time.sleep(seconds)
    return [np.zeros(3)] * rows


def test_references_scale_down_to_the_budget_in_whole_pairs() -> None:
    import time

    plan = plan_references(8, 40, np.random.default_rng(0))
    messages: list[str] = []
    fits = reference_probabilities(
        plan, lambda batch: _fits(len(batch), 0.5), batch_size=1,
        deadline=time.monotonic() + 4.25, budget_s=4.25, progress=messages.append,
        check_budget=lambda: None,
    )
    # 0.5 s a fit, 2 s kept for the evaluation: four fits, not eight.
    assert fits.plan.count == 4
    assert fits.probabilities.shape == (4, 3)
    assert fits.metrics()["references_planned"] == 8
    assert "fitted 4 of 8 reference models" in str(fits.scaled_down)
    assert messages[0].startswith("reference models fitted 1/8, ETA")
    with pytest.raises(ReferencesDoNotFit, match="two would overrun"):
        reference_probabilities(
            plan, lambda batch: _fits(len(batch), 0.5), batch_size=1,
            deadline=time.monotonic() + 2.7, budget_s=2.7, progress=messages.append,
            check_budget=lambda: None,
        )


def test_estimators_with_their_own_threads_fit_one_at_a_time() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    forest_pipeline = make_pipeline(StandardScaler(), RandomForestClassifier())
    assert parallel_fit_settings(forest_pipeline, -1) == FitParallelism(1, -1)
    explicit = make_pipeline(StandardScaler(), RandomForestClassifier(n_jobs=1))
    assert parallel_fit_settings(explicit, 2) == FitParallelism(
        1, 2, ("randomforestclassifier__n_jobs",)
    )
    assert parallel_fit_settings(HistGradientBoostingClassifier(), -1) == FitParallelism(1, 1)
    from sklearn.tree import DecisionTreeClassifier

    # One core each: as many references at once as there are workers (and cores).
    assert parallel_fit_settings(DecisionTreeClassifier(), 1) == FitParallelism(1, 1)
    cores = len(os.sched_getaffinity(0))
    assert parallel_fit_settings(DecisionTreeClassifier(), -1) == FitParallelism(cores, 1)


@pytest.mark.slow
def test_parallel_fitting_gives_the_serial_numbers(tmp_path: Path) -> None:
    train, holdout = noisy_frame(300, 1), noisy_frame(300, 2)
    fitted = forest().fit(train.drop(columns=[TARGET]), train[TARGET])
    subject = write_subject(tmp_path, fitted, train, holdout, fit=False)
    model = wrap_estimator(fitted, "scikit-learn", "m")
    data = membership_data(subject, model, seed=0, max_rows=1000)
    plan = plan_references(4, len(data.pool), np.random.default_rng(0))
    serial, parallel = (
        reference_probabilities(
            plan, local_fit_batch(model, data, FitParallelism(jobs, 1)), batch_size=jobs,
            deadline=float("inf"), budget_s=60.0, progress=lambda _: None,
            check_budget=lambda: None,
        ).probabilities
        for jobs in (1, 2)
    )
    np.testing.assert_array_equal(serial, parallel)
    assert serial.shape == (4, 600)
    # Rows a reference trained on are more confidently right under it than rows it did not.
    inside = plan.keep[:, data.targets]
    assert serial[inside].mean() > serial[~inside].mean() + 0.2


def test_reference_scores_find_a_planted_membership_shift() -> None:
    rng = np.random.default_rng(0)
    rows, references = 400, 8
    difficulty = rng.uniform(0.2, 0.9, rows)  # every row has its own typical confidence
    inside = np.zeros((references, rows), dtype=bool)
    inside[: references // 2] = True
    observed = np.clip(difficulty + np.where(inside, 0.08, 0.0) + rng.normal(0, 0.02, inside.shape),
                       0.01, 0.99)
    member = np.arange(rows) < rows // 2
    target = np.clip(difficulty + np.where(member, 0.08, 0.0), 0.01, 0.99)
    scores = {a.name: a.scores for a in reference_attacks(target, observed, inside)}
    assert set(scores) == {"lira-online", "lira-offline", "rmia"}
    for name, values in scores.items():
        assert auc(values[member], values[~member]) > 0.95, name
    # A global threshold on the raw confidence cannot separate rows of different difficulty.
    assert auc(target[member], target[~member]) < 0.7


def test_logit_clip_is_half_the_finest_step() -> None:
    forest_like = np.array([0.0, 0.01, 0.5, 0.99, 1.0])
    assert logit_clip(forest_like) == pytest.approx(0.005)
    assert logit_clip(np.array([0.0, 1.0])) == 0.25
    assert logit_clip(np.array([1e-30, 0.5])) == 1e-12


def test_models_without_probabilities_cannot_be_attacked_with_references() -> None:
    from sklearn.linear_model import RidgeClassifier

    train = noisy_frame(50, 1)
    model = wrap_estimator(
        RidgeClassifier().fit(train.drop(columns=[TARGET]), train[TARGET]), "scikit-learn", "m"
    )
    assert refit_obstacle(model) == (
        "reference-model attacks need class probabilities; the model gives only labels"
    )
