"""Membership attacks that need no reference models.

Threshold attacks score each row from the model's output alone:

* ``loss`` (Yeom et al. 2018): the log-probability of the true class, i.e. minus the
  cross-entropy loss. Members were fitted, so their loss tends to be lower.
* ``confidence`` (Salem et al. 2019): the highest class probability, without the label.
* ``rule-based`` (label-only; Yeom et al.'s gap attack): 1 if the model classifies the row
  correctly, else 0. It is the decision rule of ART's ``MembershipInferenceBlackBoxRuleBased``,
  computed here so that label-only models are covered without ART; a test checks the two agree.

``art-black-box`` is ART's ``MembershipInferenceBlackBox``: a classifier trained on (output,
label) pairs of known members and non-members, the shadow-classifier kind of attack. It learns
from membership labels, so it is cross-fitted: two folds, each scored by the attack trained on
the other, so that no row is scored by an attack that saw its membership.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlaudit.privacy.art_bridge import art_module, seed_attack_model
from mlaudit.privacy.outputs import ModelOutputs

# ART's default attack model is a torch network; a random forest needs no torch, is
# deterministic once seeded, and is what ART's own tabular examples use.
ART_ATTACK_MODEL = "rf"
FOLDS = 2


@dataclass(frozen=True, eq=False)
class AttackScores:
    """Membership scores of one attack on the evaluation rows, higher meaning member."""

    name: str
    scores: np.ndarray


def threshold_attacks(outputs: ModelOutputs, labels: np.ndarray) -> list[AttackScores]:
    """The reference-free threshold attacks the model's outputs allow."""
    correct = (outputs.predicted == labels).astype(float)
    attacks = [AttackScores("rule-based", correct)]
    if outputs.probabilities is not None:
        true_class = outputs.true_class_probability(labels)
        tiny = np.finfo(float).tiny  # log(0) would be -inf; the order is all that matters
        attacks = [
            AttackScores("loss", np.log(np.maximum(true_class, tiny))),
            AttackScores("confidence", outputs.probabilities.max(axis=1)),
            *attacks,
        ]
    return attacks


def stratified_folds(member: np.ndarray, rng: np.random.Generator, folds: int) -> np.ndarray:
    """A fold number per row, members and non-members each spread evenly over the folds."""
    assignment = np.empty(len(member), dtype=np.int64)
    for group in (np.flatnonzero(member), np.flatnonzero(~member)):
        assignment[rng.permutation(group)] = np.arange(len(group)) % folds
    return assignment


def art_black_box(
    outputs: ModelOutputs,
    labels: np.ndarray,
    member: np.ndarray,
    classifier: object,
    rng: np.random.Generator,
) -> AttackScores:
    """ART's ``MembershipInferenceBlackBox`` on the model's outputs, cross-fitted."""
    inference = art_module("art.attacks.inference.membership_inference")
    vectors = outputs.as_prediction_vectors()
    folds = stratified_folds(member, rng, FOLDS)
    scores = np.empty(len(member), dtype=float)
    for fold in range(FOLDS):
        fit, score = folds != fold, folds == fold
        attack = inference.MembershipInferenceBlackBox(
            classifier, input_type="prediction", attack_model_type=ART_ATTACK_MODEL
        )
        seed_attack_model(attack, rng)
        attack.fit(
            y=labels[fit & member],
            pred=vectors[fit & member],
            test_y=labels[fit & ~member],
            test_pred=vectors[fit & ~member],
        )
        inferred = attack.infer(None, labels[score], pred=vectors[score], probabilities=True)
        scores[score] = np.asarray(inferred, dtype=float).ravel()
    return AttackScores("art-black-box", scores)
