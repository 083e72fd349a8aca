"""``mlaudit db fetch``: download OSV's PyPI export, the one command that uses the network.

The download goes to a temporary file beside the destination, is checked by indexing it
(which also warms the index cache, so the next scan starts at once), and only then replaces
the previous copy: an interrupted or corrupt download never takes the place of a good one.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlaudit.core.errors import UsageError
from mlaudit.deps.osv import DatabaseInfo, VulnDatabaseError, cache_dir, open_database

OSV_PYPI_URL = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
FILENAME = "PyPI-all.zip"
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    info: DatabaseInfo


def default_destination() -> Path:
    return cache_dir() / "osv"


def fetch(
    url: str = OSV_PYPI_URL,
    destination: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Fetched:
    if not url.startswith(("https://", "http://")):
        raise UsageError(f"cannot fetch {url}: only http and https URLs are supported")
    folder = destination or default_destination()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary_name = tempfile.mkstemp(dir=folder, prefix=f".{FILENAME}.", suffix=".tmp")
    except OSError as error:
        raise UsageError(f"cannot write to {folder}: {error.strerror}") from None
    temporary = Path(temporary_name)
    try:
        progress(f"downloading {url}")
        # The scheme is checked above: only http(s), never file: or a custom opener.
        with (
            os.fdopen(handle, "wb") as out,
            urllib.request.urlopen(url, timeout=TIMEOUT_S) as response,  # noqa: S310
        ):
            shutil.copyfileobj(response, out, _CHUNK)
        size = temporary.stat().st_size
        progress(f"downloaded {size / 1e6:.1f} MB; indexing")
        try:
            with open_database(temporary) as index:
                info = index.info
        except VulnDatabaseError as error:
            raise UsageError(f"{url} did not serve an OSV export: {error}") from None
        target = folder / FILENAME
        os.replace(temporary, target)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise UsageError(f"cannot fetch {url}: {getattr(error, 'reason', error)}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return Fetched(target, size, dataclasses.replace(info, path=str(target)))
