"""A model given as ``module:callable``: Python code the user vouches for by naming it.

The named object is either a model with ``predict`` (and optionally ``predict_proba`` and
``classes_``), or a function mapping a batch of rows to predictions. Either receives a pandas
DataFrame of the feature columns.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import LoadedModel, Task


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    module_name, _, attribute_path = artifact.reference.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        target: object = importlib.import_module(module_name)
    except Exception as error:  # the user's module may raise anything while importing
        raise InputError(
            f"entry point {artifact.reference}: cannot import {module_name}: {error}"
        ) from None
    for part in attribute_path.split("."):
        if not hasattr(target, part):
            raise InputError(f"entry point {artifact.reference}: {module_name} has no {part}")
        target = getattr(target, part)
    return wrap_object(target, f"entry point {artifact.reference}")


def wrap_object(target: object, origin: str) -> LoadedModel:
    """``target``, a model with ``predict`` or a function, queried with DataFrames; ``origin``
    names it in errors (``entry point pkg:model``)."""
    if callable(getattr(target, "predict", None)):
        return wrap_estimator(target, "python", origin, frames=True)
    if not callable(target):
        raise InputError(f"{origin} is neither a model nor a function")
    function = target

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(function(frame))

    return LoadedModel("python", Task.UNKNOWN, target, predict)
