"""mlaudit: audit a trained machine-learning model before release.

``mlaudit.scan(...)`` runs an audit and returns an ``Audit``; see :mod:`mlaudit.api`. Importing
mlaudit stays light: the API (and pandas, scikit-learn, the rules behind it) is imported on the
first use of one of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlaudit.core.errors import ConfigError, InputError, UsageError
from mlaudit.core.version import __version__

if TYPE_CHECKING:
    from mlaudit.api import Audit, scan

__all__ = ["Audit", "ConfigError", "InputError", "UsageError", "__version__", "scan"]
_LAZY = frozenset({"Audit", "scan"})


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from mlaudit import api

        return getattr(api, name)
    raise AttributeError(f"module 'mlaudit' has no attribute {name!r}")
