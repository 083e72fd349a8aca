"""XGBoost models saved with ``save_model`` (JSON or UBJSON): numbers only, no code."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np

from mlaudit.core.errors import InputError, first_line
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.loaders.native_trees import import_library
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.scanners.tree_formats import xgboost_task
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import LoadedModel, Task

FRAMEWORK = "xgboost"
_WRAPPERS = {"classification": "XGBClassifier", "regression": "XGBRegressor",
             "ranking": "XGBRanker"}


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    """The model in XGBoost's scikit-learn wrapper for its objective, so every rule that reads
    scikit-learn estimators (reference models, tree verification) reads it too."""
    xgboost = import_library("xgboost", "XGBoost", "xgboost", artifact)
    assert artifact.path is not None
    try:
        booster = xgboost.Booster(model_file=str(artifact.path))
        document = json.loads(booster.save_raw("json"))
        objective = str(document["learner"]["objective"]["name"])
        task = xgboost_task(objective)
        estimator = getattr(xgboost, _WRAPPERS.get(task, "XGBRegressor"))()
        estimator.load_model(str(artifact.path))
    except (xgboost.core.XGBoostError, ValueError, KeyError) as error:
        raise InputError(
            f"{artifact.reference} could not be loaded by XGBoost: {first_line(error)}"
        ) from None
    estimator.set_params(**_hyperparameters(booster, document, objective, task))
    loaded = wrap_estimator(estimator, FRAMEWORK, artifact.reference)
    if task == "ranking":  # a ranking score is neither a class nor a regression target
        return replace(loaded, task=Task.UNKNOWN)
    return loaded


def _hyperparameters(
    booster: Any, document: Any, objective: str, task: str
) -> dict[str, Any]:
    """What the file says of how the model was trained, for the reference models MLA302 fits
    like it: rounds, objective and the depth its trees reach. XGBoost's file keeps no
    learning rate or regularisation; the library's defaults stand in for them."""
    trees = document["learner"]["gradient_booster"].get("model", {}).get("trees", [])
    depth = max((_depth(tree) for tree in trees), default=0)
    parameters: dict[str, Any] = {"n_estimators": int(booster.num_boosted_rounds())}
    if task != "classification":
        # A classifier picks its objective from the labels it is refitted on (binary or
        # multi-class), which a reference model's half of the rows may change.
        parameters["objective"] = objective
    if depth:
        parameters["max_depth"] = depth
    return parameters


def _depth(tree: Any) -> int:
    left = np.asarray(tree["left_children"], dtype=np.int64)
    right = np.asarray(tree["right_children"], dtype=np.int64)
    frontier, depth = np.array([0]), 0
    while True:
        frontier = frontier[left[frontier] != -1]
        if not frontier.size:
            return depth
        frontier = np.concatenate([left[frontier], right[frontier]])
        depth += 1
