"""Whether a path named inside a model file reaches outside the model's folder."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath


def escape_reason(name: str, folder: Path) -> str | None:
    """Why ``name``, relative to ``folder``, reaches outside it; None when it stays inside.

    Both path syntaxes count: a loader on Windows reads ``C:\\`` and ``\\\\server`` names a
    POSIX check would pass.
    """
    if "\x00" in name:
        return "contains a NUL character"
    windows = PureWindowsPath(name)
    if PurePosixPath(name).is_absolute() or windows.is_absolute() or windows.drive or (
        name.startswith("\\")
    ):
        return "is an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "contains a '..' component"
    base = os.path.realpath(folder)
    try:
        target = os.path.realpath(os.path.join(base, name))
        inside = os.path.commonpath([base, target]) == base
    except (ValueError, OSError):
        return "cannot be resolved"
    if not inside:
        return "resolves, through a symbolic link, outside the model's folder"
    return None
