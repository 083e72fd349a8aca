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
    origin = f"entry point {artifact.reference}"
    return wrap_object(
        import_named(artifact.reference, origin), origin, text_column=options.text_column
    )


def import_named(reference: str, origin: str) -> object:
    """The object ``module:attribute.path`` names, its module imported from the working folder
    too (where a user's own modules live); an input error naming ``origin`` if it cannot be.

    Importing runs the module's code: call this only for names the user vouches for (an entry
    point, a ``--model-class``, a global the user allowed)."""
    module_name, _, attribute_path = reference.partition(":")
    working_folder_importable()
    try:
        target: object = importlib.import_module(module_name)
    except Exception as error:  # the user's module may raise anything while importing
        raise InputError(f"{origin}: cannot import {module_name}: {error}") from None
    for part in attribute_path.split("."):
        if not hasattr(target, part):
            raise InputError(f"{origin}: {module_name} has no {part}")
        target = getattr(target, part)
    return target


def wrap_object(target: object, origin: str, *, text_column: str | None = None) -> LoadedModel:
    """``target``, a model with ``predict`` or a function, queried with DataFrames (a text
    model with its ``text_column``); ``origin`` names it in errors (``entry point pkg:model``)."""
    if callable(getattr(target, "predict", None)):
        return wrap_estimator(target, "python", origin, frames=True, text_column=text_column)
    if not callable(target):
        raise InputError(f"{origin} is neither a model nor a function")
    function = target

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(function(frame))

    return LoadedModel("python", Task.UNKNOWN, target, predict)


def working_folder_importable() -> None:
    """Put the working folder on the import path, where ``python -m`` would have it: the CLI's
    own script folder is there instead, and a user's modules live beside their data."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
