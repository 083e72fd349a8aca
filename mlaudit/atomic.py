"""Atomic file output: a reader sees the old file or the complete new one, never a partial one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def write_files_atomically(directory: Path, contents: Mapping[str, bytes]) -> list[Path]:
    """Write every file to a temporary name first, then rename them all into place.

    Rendering happens before this is called, so a failure cannot leave a partial set behind;
    if a write fails, the temporary files written so far are removed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in contents.items():
            handle, temporary_name = tempfile.mkstemp(
                dir=directory, prefix=f".{name}.", suffix=".tmp"
            )
            staged.append((Path(temporary_name), directory / name))
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in staged:
        os.replace(temporary, final)
    return [final for _, final in staged]
