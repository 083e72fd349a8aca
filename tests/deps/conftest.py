"""OSV fixtures: the real advisories in examples/osv, and records or zips the tests write."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

EXAMPLE_OSV = Path(__file__).resolve().parents[2] / "examples" / "osv"


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Index caches go to a fresh folder, never the user's ~/.cache."""
    monkeypatch.delenv("MLAUDIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def example_records() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(EXAMPLE_OSV.glob("*.json"))]


def write_zip(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for record in records:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return path


def record(
    record_id: str,
    package: str,
    events: list[dict[str, str]],
    **extra: Any,
) -> dict[str, Any]:
    """A minimal OSV record written by a test."""
    return {
        "id": record_id,
        "modified": extra.pop("modified", "2025-01-01T00:00:00Z"),
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                **extra.pop("affected_extra", {}),
            }
        ],
        **extra,
    }
