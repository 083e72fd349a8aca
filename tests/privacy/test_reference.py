"""Reference models: the in/out design, refitting, and the LiRA and RMIA scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.privacy.evaluation import membership_data
from mlaudit.privacy.reference import (
    logit_clip,
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


@pytest.mark.slow
def test_parallel_fitting_gives_the_serial_numbers(tmp_path: Path) -> None:
    train, holdout = noisy_frame(300, 1), noisy_frame(300, 2)
    fitted = forest().fit(train.drop(columns=[TARGET]), train[TARGET])
    subject = write_subject(tmp_path, fitted, train, holdout, fit=False)
    model = wrap_estimator(fitted, "scikit-learn", "m")
    data = membership_data(subject, model, seed=0, max_rows=1000)
    plan = plan_references(4, len(data.pool), np.random.default_rng(0))
    serial, parallel = (
        reference_probabilities(model, data, plan, n_jobs=jobs, check_budget=lambda: None)
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
