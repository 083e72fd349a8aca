"""What the XGBoost, LightGBM and CatBoost loaders share: the library import with its install
hint, and which feature names a model file really holds."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from types import ModuleType

from mlaudit.core.errors import InputError
from mlaudit.subject.build import ModelArtifact

# The names each library makes up for columns it was given without names.
_DEFAULT_NAMES = re.compile(r"(f|Column_)?\d+")


def import_library(module: str, title: str, extra: str, artifact: ModelArtifact) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"{artifact.reference} is a {title} model; loading it needs {module}: "
            f"pip install 'mlaudit[{extra}]'"
        ) from None


def given_names(names: Sequence[str] | None) -> tuple[str, ...] | None:
    """``names`` unless they are the library's positional defaults (``f0``, ``Column_0``,
    ``0``...), which say only how many features the model takes."""
    if not names:
        return None
    if all(_DEFAULT_NAMES.fullmatch(name) for name in names):
        return None
    return tuple(str(n) for n in names)
