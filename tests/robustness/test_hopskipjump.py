"""The batched attack finds near-minimal, real adversarial examples within its budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlaudit.robustness.hopskipjump import AttackSettings, hop_skip_jump
from mlaudit.robustness.oracle import Oracle
from mlaudit.robustness.space import FeatureSpace, distance
from mlaudit.subject.model_info import LoadedModel, Task
from tests.robustness.models import separated


def _threshold(frame: pd.DataFrame) -> np.ndarray:
    return (frame["lead"].to_numpy() > 0.5).astype(int)


def _setup(immutable: tuple[str, ...] = ()) -> tuple[Oracle, pd.DataFrame, np.ndarray]:
    frame, labels = separated(rows=60, gap=0.1)
    model = LoadedModel("test", Task.CLASSIFICATION, None, _threshold, classes=(0, 1))
    space = FeatureSpace.from_data([frame], immutable=immutable)
    return Oracle(model, space, frame, labels), frame, labels


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_finds_near_minimal_perturbations_that_really_flip(norm: str) -> None:
    oracle, frame, labels = _setup()
    rows = np.arange(len(frame))
    outcome = hop_skip_jump(
        oracle,
        rows,
        AttackSettings(norm, 1000),
        np.random.default_rng(0),
        donors=oracle.space.to_unit(frame),
        donor_outputs=labels,
    )
    assert np.isfinite(outcome.distance).all()
    adversarial = oracle.space.frame(frame, rows, outcome.adversarial)
    assert (_threshold(adversarial) != labels).all()
    assert adversarial["count"].tolist() == np.round(adversarial["count"]).tolist()
    # The only direction that matters is ``lead``: the optimum moves it to 0.5 alone.
    optimum = np.abs(frame["lead"].to_numpy() - 0.5) / oracle.space.scale[0]
    if norm == "l2":
        optimum = optimum / np.sqrt(3)
    assert np.all(outcome.distance >= optimum - 1e-9)
    assert np.median(outcome.distance / optimum) < 1.1
    assert oracle.queries.max() <= 1000


def test_frozen_features_never_move_and_the_seed_fixes_the_result() -> None:
    results = []
    for _ in range(2):
        oracle, frame, labels = _setup(immutable=("noise",))
        rows = np.arange(20)
        outcome = hop_skip_jump(
            oracle,
            rows,
            AttackSettings("l2", 300),
            np.random.default_rng(7),
            donors=oracle.space.to_unit(frame),
            donor_outputs=labels,
        )
        adversarial = oracle.space.frame(frame, rows, outcome.adversarial)
        np.testing.assert_array_equal(adversarial["noise"], frame["noise"].iloc[:20])
        results.append(outcome.distance)
    np.testing.assert_array_equal(results[0], results[1])


def test_a_model_that_never_changes_its_mind_is_not_flipped() -> None:
    frame, labels = separated(rows=20)
    model = LoadedModel(
        "test", Task.CLASSIFICATION, None, lambda f: np.zeros(len(f), dtype=int), classes=(0, 1)
    )
    oracle = Oracle(model, FeatureSpace.from_data([frame]), frame, labels)
    rows = np.flatnonzero(labels == 0)
    outcome = hop_skip_jump(
        oracle,
        rows,
        AttackSettings("linf", 200),
        np.random.default_rng(0),
        donors=oracle.space.to_unit(frame),
        donor_outputs=labels,
    )
    assert np.isinf(outcome.distance).all()
    assert np.isnan(outcome.adversarial).all()


def test_distance_reported_is_the_realised_one() -> None:
    oracle, frame, labels = _setup()
    rows = np.arange(10)
    outcome = hop_skip_jump(
        oracle,
        rows,
        AttackSettings("linf", 400),
        np.random.default_rng(1),
        donors=oracle.space.to_unit(frame),
        donor_outputs=labels,
    )
    origin = oracle.space.to_unit(frame.iloc[rows])
    np.testing.assert_allclose(outcome.distance, distance(outcome.adversarial - origin, "linf"))


def test_each_norm_gets_its_own_budget_on_a_shared_oracle() -> None:
    """Regression: L2 ran second on the oracle's counter and started with its budget spent."""
    oracle, frame, labels = _setup()
    rows = np.arange(len(frame))
    spent = []
    distances = {}
    for norm in ("linf", "l2"):
        before = oracle.queries.copy()
        distances[norm] = hop_skip_jump(
            oracle,
            rows,
            AttackSettings(norm, 600),
            np.random.default_rng(0),
            donors=oracle.space.to_unit(frame),
            donor_outputs=labels,
        ).distance
        spent.append(oracle.queries - before)
    assert spent[1].max() <= 600
    # The second attack used a real budget, not the scraps of the first one's.
    assert spent[1].sum() > 0.5 * spent[0].sum()
    optimum = np.abs(frame["lead"].to_numpy() - 0.5) / oracle.space.scale[0] / np.sqrt(3)
    assert np.median(distances["l2"] / optimum) < 1.1


def test_extra_starts_search_several_candidates_and_never_do_worse() -> None:
    oracle, frame, labels = _setup()
    rows = np.arange(len(frame))
    found = {}
    for starts in (1, 6):
        found[starts] = hop_skip_jump(
            oracle,
            rows,
            AttackSettings("linf", 0, donors=16, starts=starts),  # starts only, no iterations
            np.random.default_rng(0),
            donors=oracle.space.to_unit(frame),
            donor_outputs=labels,
        ).distance
    assert np.all(found[6] <= found[1] + 1e-12)
    assert np.any(found[6] < found[1] - 1e-6)
