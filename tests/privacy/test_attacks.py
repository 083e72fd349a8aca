"""The reference-free attacks against ART's own implementations, and the ART bridge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.privacy.art_bridge import art_classifier, art_module, codec_for
from mlaudit.privacy.attacks import art_black_box, stratified_folds, threshold_attacks
from mlaudit.privacy.evaluation import membership_data
from mlaudit.privacy.outputs import query_outputs
from tests.privacy.fixtures import forest, noisy_frame, write_subject


def test_rule_based_attack_is_arts(tmp_path: Path) -> None:
    subject = write_subject(tmp_path, forest(), noisy_frame(200, 1), noisy_frame(200, 2))
    model = wrap_estimator(forest().fit(*_xy(noisy_frame(200, 1))), "scikit-learn", "m")
    data = membership_data(subject, model, seed=0, max_rows=1000)
    outputs = query_outputs(model, data.features, data.classes)
    [rule_based] = [a for a in threshold_attacks(outputs, data.labels) if a.name == "rule-based"]
    codec = codec_for(data.features)
    inference = art_module("art.attacks.inference.membership_inference")
    art = inference.MembershipInferenceBlackBoxRuleBased(
        art_classifier(model, codec, data.classes)
    )
    expected = art.infer(codec.encode(data.features), data.labels)
    np.testing.assert_array_equal(rule_based.scores, expected)


def test_art_black_box_is_cross_fitted_and_seeded(tmp_path: Path) -> None:
    subject = write_subject(tmp_path, forest(), noisy_frame(200, 1), noisy_frame(200, 2))
    model = wrap_estimator(forest().fit(*_xy(noisy_frame(200, 1))), "scikit-learn", "m")
    data = membership_data(subject, model, seed=0, max_rows=1000)
    outputs = query_outputs(model, data.features, data.classes)
    classifier = art_classifier(model, codec_for(data.features), data.classes)
    runs = [
        art_black_box(outputs, data.labels, data.member, classifier, np.random.default_rng(5))
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].scores, runs[1].scores)
    assert ((runs[0].scores >= 0) & (runs[0].scores <= 1)).all()
    # The memorising forest is easy prey even for the trained attack.
    assert runs[0].scores[data.member].mean() > runs[0].scores[~data.member].mean()


def test_stratified_folds_split_members_and_non_members_evenly() -> None:
    member = np.arange(101) < 51
    folds = stratified_folds(member, np.random.default_rng(0), 2)
    assert abs((folds[member] == 0).sum() - (folds[member] == 1).sum()) <= 1
    assert abs((folds[~member] == 0).sum() - (folds[~member] == 1).sum()) <= 1


def test_codec_round_trips_text_numbers_and_missing_values() -> None:
    frame = pd.DataFrame(
        {"n": [1, 2, 3], "f": [0.5, np.nan, 2.0], "t": ["b", None, "a"]}
    )
    codec = codec_for(frame)
    matrix = codec.encode(frame)
    assert matrix.dtype == float
    assert matrix[:, 2].tolist()[::2] == [1.0, 0.0]
    decoded = codec.decode(matrix)
    assert decoded["n"].dtype == frame["n"].dtype
    pd.testing.assert_frame_equal(decoded, frame, check_dtype=False)


def _xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return frame.drop(columns=["y"]), frame["y"]


@pytest.mark.parametrize("probabilities", [True, False])
def test_threshold_attacks_by_output_kind(probabilities: bool) -> None:
    from mlaudit.privacy.outputs import ModelOutputs

    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    outputs = ModelOutputs(proba if probabilities else None, proba.argmax(axis=1), 2)
    labels = np.array([0, 0, 1])
    attacks = {a.name: a.scores for a in threshold_attacks(outputs, labels)}
    assert attacks["rule-based"].tolist() == [1.0, 0.0, 0.0]
    if probabilities:
        assert np.exp(attacks["loss"]).tolist() == pytest.approx([0.9, 0.2, 0.4])
        assert attacks["confidence"].tolist() == [0.9, 0.8, 0.6]
    else:
        assert set(attacks) == {"rule-based"}
