"""The OSV database: index building and caching, severity, aliases, matching, bad input."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from mlaudit.deps.matching import Resolved, match, resolve
from mlaudit.deps.model import DependencySet, Origin
from mlaudit.deps.osv import VulnDatabaseError, open_database
from tests.deps.conftest import EXAMPLE_OSV, example_records, record, write_zip


def _resolved(name: str, version: str) -> Resolved:
    return Resolved(name, version, Origin("requirements.txt", 1), "requirements")


def test_real_advisories_merge_their_aliases(tmp_path: Path) -> None:
    with open_database(EXAMPLE_OSV) as index:
        assert (index.info.records, index.info.packages, index.info.kind) == (5, 4, "folder")
        assert index.info.newest_modified == "2025-04-23T16:33:51+00:00"
        found = match([_resolved("scikit-learn", "1.4.2"), _resolved("scikit-learn", "1.5.0")],
                      index)
    [sklearn] = found
    assert sklearn.primary == "CVE-2024-5206"
    assert sklearn.ids == ("CVE-2024-5206", "GHSA-jw8x-6495-233v", "PYSEC-2024-110")
    assert (sklearn.severity, sklearn.score, sklearn.fixed) == ("medium", 5.3, ("1.5.0",))
    assert sklearn.cwe == ("CWE-921", "CWE-922")
    assert sklearn.summary == "scikit-learn sensitive data leakage vulnerability"


def test_torch_weights_only_bypass_is_critical_from_its_cvss_v4_vector() -> None:
    with open_database(EXAMPLE_OSV) as index:
        [torch] = match([_resolved("torch", "2.5.1"), _resolved("torch", "2.6.0")], index)
    assert (torch.primary, torch.severity, torch.score) == ("CVE-2025-32434", "critical", 9.3)
    assert torch.vector is not None
    assert torch.vector.startswith("CVSS:4.0/")
    assert torch.fixed == ("2.6.0",)


def test_the_index_is_built_once_and_cached_by_digest(tmp_path: Path) -> None:
    database = write_zip(tmp_path / "all.zip", example_records())
    with open_database(database) as first:
        assert (first.info.index, first.info.kind) == ("built", "zip")
    with open_database(database) as second:
        assert second.info.index == "cached"
        assert second.info.sha256 == first.info.sha256
    write_zip(database, example_records()[:2])  # a new database: a new digest, a new index
    with open_database(database) as third:
        assert third.info.index == "built"
        assert third.info.records == 2


def test_an_unwritable_cache_builds_the_index_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("MLAUDIT_CACHE_DIR", str(blocker))
    with open_database(EXAMPLE_OSV) as index:
        assert index.info.index == "memory"
        assert index.info.records == 5


def test_withdrawn_records_are_skipped_and_explicit_versions_match(tmp_path: Path) -> None:
    records = [
        record(
            "GHSA-wwww-wwww-wwww", "demo", [{"introduced": "0"}],
            withdrawn="2025-01-02T00:00:00Z",
        ),
        record("PYSEC-2025-1", "demo", [], affected_extra={"versions": ["1.0", "1.1"]}),
        record("MAL-2025-7", "evil-pkg", [{"introduced": "0"}]),
        record(
            "GHSA-dddd-dddd-dddd", "Demo_Lib", [{"introduced": "2.0"}, {"fixed": "2.1"}],
            database_specific={"severity": "HIGH"},
        ),
        record(
            "GHSA-bbbb-bbbb-bbbb", "demo-lib", [{"introduced": "2.0"}, {"fixed": "2.2"}],
            severity=[{"type": "CVSS_V3", "score": "not a vector"}],
        ),
    ]
    database = write_zip(tmp_path / "all.zip", records)
    with open_database(database) as index:
        assert (index.info.records, index.info.withdrawn) == (5, 1)
        found = {
            m.primary: m
            for m in match(
                [_resolved("demo", "1.0.0"), _resolved("evil-pkg", "0.1"),
                 _resolved("demo-lib", "2.0.5")],
                index,
            )
        }
    assert set(found) == {"PYSEC-2025-1", "MAL-2025-7", "GHSA-bbbb-bbbb-bbbb",
                          "GHSA-dddd-dddd-dddd"}
    assert found["MAL-2025-7"].severity == "critical"
    assert found["GHSA-dddd-dddd-dddd"].severity == "high"  # database-specific rating
    assert found["GHSA-bbbb-bbbb-bbbb"].severity is None  # unreadable vector, no rating
    assert found["GHSA-bbbb-bbbb-bbbb"].fixed == ("2.2",)


def test_resolve_takes_pins_locks_and_the_environment() -> None:
    from mlaudit.deps.environment import Installed
    from mlaudit.deps.model import Declared, Kind

    declared = DependencySet(
        (
            Declared("numpy", "numpy==1.26.4", Origin("r.txt", 1), Kind.REQUIREMENT,
                     "==1.26.4", "1.26.4"),
            Declared("pandas", "pandas>=2", Origin("r.txt", 2), Kind.REQUIREMENT, ">=2"),
            Declared("numpy", "numpy==1.26.4.0", Origin("r.txt", 3), Kind.REQUIREMENT,
                     "==1.26.4.0", "1.26.4.0"),
        ),
        (), (), ("r.txt",),
    )
    installed = {"torch": Installed("torch", "2.5.1", (), ())}
    resolved, unresolved = resolve(declared, installed)
    assert [(r.name, r.version, r.source) for r in resolved] == [
        ("numpy", "1.26.4", "requirements"), ("torch", "2.5.1", "environment"),
    ]
    assert unresolved == ["pandas"]


def test_a_corrupt_or_truncated_zip_is_a_database_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(VulnDatabaseError, match="not a readable zip"):
        open_database(garbage)
    good = write_zip(tmp_path / "good.zip", example_records())
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VulnDatabaseError, match="not a readable zip"):
        open_database(truncated)
    not_json = tmp_path / "not-json.zip"
    with zipfile.ZipFile(not_json, "w") as archive:
        archive.writestr("GHSA-x.json", "{ not json")
    with pytest.raises(VulnDatabaseError, match="not JSON"):
        open_database(not_json)
    with pytest.raises(VulnDatabaseError, match="does not exist"):
        open_database(tmp_path / "missing.zip")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w"):
        pass
    with pytest.raises(VulnDatabaseError, match="no OSV records"):
        open_database(empty)
