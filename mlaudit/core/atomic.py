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
    # mkstemp creates files readable by the owner only; a report is an ordinary file, so it
    # gets the permissions the user's umask gives any new file.
    mode = 0o666 & ~_umask()
    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in contents.items():
            handle, temporary_name = tempfile.mkstemp(
                dir=directory, prefix=f".{name}.", suffix=".tmp"
            )
            staged.append((Path(temporary_name), directory / name))
            os.fchmod(handle, mode)
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


def _umask() -> int:
    # The only way to read the umask is to set it; it is set straight back.
    current = os.umask(0o022)
    os.umask(current)
    return current
