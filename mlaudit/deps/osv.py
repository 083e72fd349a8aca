"""The offline vulnerability database: an OSV export (a zip, or the folder it unpacks to).

The export (``PyPI/all.zip`` from OSV, fetched by ``mlaudit db fetch``) holds one JSON record
per advisory. Reading tens of thousands of records takes seconds, so they are read once into
an index: an SQLite file holding, for every PyPI package, the compact entries that matter
for matching (ranges, explicit versions, aliases, severity, fixed versions, CWEs). The index
is cached under the cache folder (``MLAUDIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlaudit``,
else ``~/.cache/mlaudit``), named by the database's SHA-256, so a changed database gets a new
index and a scan with a known one opens its index in milliseconds. SQLite, not pickle: a
security tool does not unpickle files from a user-writable cache. Where the cache cannot be
written the index is built in memory for the run.

Withdrawn records are skipped. Severity is computed once, when the index is built: from the
record's CVSS vector (v4, else v3, else v2, scored with the ``cvss`` library), else its
database-specific severity (GitHub's LOW/MODERATE/HIGH/CRITICAL); malicious-package records
(``MAL-``) are critical. A database that cannot be read (not a zip, truncated, a record that
is not JSON) is a :class:`VulnDatabaseError`: exit code 2, no report.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from mlaudit.core.errors import ConfigError
from mlaudit.core.hashing import sha256_file, sha256_tree
from mlaudit.deps.versions import Events

INDEX_SCHEMA = 1
MAX_RECORD_BYTES = 16 << 20
_BATCH = 5000
_QUERY_CHUNK = 500
_CWE = re.compile(r"^CWE-\d+$")
_GITHUB_SEVERITY = {
    "LOW": "low", "MODERATE": "medium", "MEDIUM": "medium", "HIGH": "high", "CRITICAL": "critical",
}
_MAX_REFERENCES = 5


class VulnDatabaseError(ConfigError):
    """The database named by ``--vuln-db`` or ``vuln_db`` cannot be read.

    A configuration error (exit 2, no report), like a malformed configuration file: the
    audit would otherwise pass for want of data it was told to use.
    """


def cache_dir() -> Path:
    explicit = os.environ.get("MLAUDIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlaudit"


@dataclass(frozen=True)
class DatabaseInfo:
    path: str
    kind: str
    sha256: str
    records: int
    withdrawn: int
    packages: int
    newest_modified: str | None
    index: str

    def age_days(self, now: datetime) -> float | None:
        if self.newest_modified is None:
            return None
        return (now - datetime.fromisoformat(self.newest_modified)).total_seconds() / 86400


@dataclass(frozen=True)
class Advisory:
    """One OSV record's entry for one PyPI package."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: str | None
    score: float | None
    vector: str | None
    cwe: tuple[str, ...]
    references: tuple[str, ...]
    ranges: tuple[Events, ...]
    versions: tuple[str, ...]


def score_severity(score: float) -> str:
    """CVSS qualitative rating: none (info), low, medium, high, critical."""
    if score == 0:
        return "info"
    return "low" if score < 4 else "medium" if score < 7 else "high" if score < 9 else "critical"


def _cvss(kind: str, vector: str) -> float | None:
    import cvss
    from cvss.exceptions import CVSSError

    try:
        if kind == "CVSS_V4":
            return float(cvss.CVSS4(vector).base_score)
        if kind == "CVSS_V3":
            return float(cvss.CVSS3(vector).scores()[0])
        if kind == "CVSS_V2":
            return float(cvss.CVSS2(vector).scores()[0])
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _severity(holder: Mapping[str, Any]) -> dict[str, Any] | None:
    """The newest CVSS vector that scores, else the database-specific rating."""
    vectors: dict[str, str] = {
        str(s.get("type")): s["score"]
        for s in map(_dict, _list(holder.get("severity")))
        if isinstance(s.get("score"), str)
    }
    for kind in ("CVSS_V4", "CVSS_V3", "CVSS_V2"):
        if kind in vectors:
            score = _cvss(kind, vectors[kind])
            if score is not None:
                return {"severity": score_severity(score), "score": score, "vector": vectors[kind]}
    for specific in ("database_specific", "ecosystem_specific"):
        rating = _dict(holder.get(specific)).get("severity")
        if isinstance(rating, str) and rating.upper() in _GITHUB_SEVERITY:
            return {"severity": _GITHUB_SEVERITY[rating.upper()], "score": None, "vector": None}
    return None


def _events(value: object) -> list[dict[str, str]]:
    return [
        {k: v for k, v in event.items() if isinstance(v, str)}
        for event in map(_dict, _list(value))
        if event
    ]


def _common(record: Mapping[str, Any]) -> dict[str, Any]:
    record_id = str(record["id"])
    details = record.get("details") if isinstance(record.get("details"), str) else ""
    summary = record.get("summary") if isinstance(record.get("summary"), str) else ""
    references = sorted(
        (r for r in map(_dict, _list(record.get("references"))) if isinstance(r.get("url"), str)),
        key=lambda r: r.get("type") != "ADVISORY",
    )
    cwe = [c for c in _list(_dict(record.get("database_specific")).get("cwe_ids")) if
           isinstance(c, str) and _CWE.match(c)]
    severity = _severity(record) or {"severity": None, "score": None, "vector": None}
    if record_id.startswith("MAL-"):
        severity = {**severity, "severity": "critical"}
    return {
        "id": record_id,
        "aliases": [a for a in _list(record.get("aliases")) if isinstance(a, str)],
        "summary": (summary or str(details).strip().split("\n", 1)[0])[:300],
        **severity,
        "cwe": cwe,
        "references": [r["url"] for r in references[:_MAX_REFERENCES]],
    }


def _modified(record: Mapping[str, Any]) -> str | None:
    value = record.get("modified")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def entries(record: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(canonical PyPI package name, compact entry) for each package the record affects."""
    common = _common(record)
    for affected in map(_dict, _list(record.get("affected"))):
        package = _dict(affected.get("package"))
        if package.get("ecosystem") != "PyPI" or not isinstance(package.get("name"), str):
            continue
        ranges = [
            _events(r.get("events"))
            for r in map(_dict, _list(affected.get("ranges")))
            if r.get("type") == "ECOSYSTEM"
        ]
        versions = [v for v in _list(affected.get("versions")) if isinstance(v, str)]
        if not any(ranges) and not versions:
            continue  # only GIT ranges: nothing to compare a version with
        own = _severity(affected)
        yield canonicalize_name(package["name"]), {
            **common, **(own or {}), "ranges": [r for r in ranges if r], "versions": versions,
        }


def _advisory(payload: Mapping[str, Any]) -> Advisory:
    return Advisory(
        id=payload["id"],
        aliases=tuple(payload["aliases"]),
        summary=payload["summary"],
        severity=payload["severity"],
        score=payload["score"],
        vector=payload["vector"],
        cwe=tuple(payload["cwe"]),
        references=tuple(payload["references"]),
        ranges=tuple(tuple(events) for events in payload["ranges"]),
        versions=tuple(payload["versions"]),
    )


def _raw_records(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        for member in sorted(path.rglob("*.json")):
            try:
                if member.stat().st_size > MAX_RECORD_BYTES:
                    raise VulnDatabaseError(f"vulnerability database {path}: {member} is too large")
                data = member.read_bytes()
            except OSError as error:
                raise VulnDatabaseError(f"vulnerability database {member}: {error}") from None
            yield str(member.relative_to(path)), data
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.endswith(".json"):
                    continue
                if info.file_size > MAX_RECORD_BYTES:
                    raise VulnDatabaseError(
                        f"vulnerability database {path}: {info.filename} is too large"
                    )
                yield info.filename, archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as error:
        raise VulnDatabaseError(
            f"vulnerability database {path} is not a readable zip ({error or type(error).__name__})"
        ) from None


def _records(path: Path) -> Iterator[dict[str, Any]]:
    for name, data in _raw_records(path):
        try:
            record = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise VulnDatabaseError(
                f"vulnerability database {path}: {name} is not JSON ({error})"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise VulnDatabaseError(f"vulnerability database {path}: {name} is not an OSV record")
        yield record


def _build(source: Path, digest: str, connection: sqlite3.Connection) -> dict[str, str]:
    connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    connection.execute("CREATE TABLE advisory (package TEXT NOT NULL, payload TEXT NOT NULL)")
    records = withdrawn = 0
    newest: str | None = None
    packages: set[str] = set()
    rows: list[tuple[str, str]] = []
    for record in _records(source):
        records += 1
        modified = _modified(record)
        if modified is not None and (newest is None or modified > newest):
            newest = modified
        if record.get("withdrawn"):
            withdrawn += 1
            continue
        for package, entry in entries(record):
            packages.add(package)
            rows.append((package, json.dumps(entry, separators=(",", ":"))))
        if len(rows) >= _BATCH:
            connection.executemany("INSERT INTO advisory VALUES (?, ?)", rows)
            rows.clear()
    if not records:
        raise VulnDatabaseError(f"vulnerability database {source} holds no OSV records")
    connection.executemany("INSERT INTO advisory VALUES (?, ?)", rows)
    connection.execute("CREATE INDEX advisory_package ON advisory (package)")
    meta = {
        "schema": str(INDEX_SCHEMA),
        "sha256": digest,
        "records": str(records),
        "withdrawn": str(withdrawn),
        "packages": str(len(packages)),
        "newest_modified": newest or "",
    }
    connection.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
    connection.commit()
    return meta


def _meta(connection: sqlite3.Connection) -> dict[str, str]:
    return dict(connection.execute("SELECT key, value FROM meta").fetchall())


class VulnerabilityIndex:
    """An open index: look up advisories by package name. Use as a context manager."""

    def __init__(self, connection: sqlite3.Connection, info: DatabaseInfo) -> None:
        self._connection = connection
        self.info = info

    def __enter__(self) -> VulnerabilityIndex:
        return self

    def __exit__(self, *_: object) -> None:
        self._connection.close()

    def advisories(self, names: Iterable[str]) -> dict[str, list[Advisory]]:
        wanted = sorted({canonicalize_name(n) for n in names})
        found: dict[str, list[Advisory]] = {}
        for start in range(0, len(wanted), _QUERY_CHUNK):
            chunk = wanted[start : start + _QUERY_CHUNK]
            marks = ",".join("?" * len(chunk))  # only placeholders go into the SQL text
            query = f"SELECT package, payload FROM advisory WHERE package IN ({marks})"  # noqa: S608
            for package, payload in self._connection.execute(query, chunk):
                found.setdefault(package, []).append(_advisory(json.loads(payload)))
        return found


def database_digest(path: Path) -> tuple[str, str]:
    """(kind, sha256): a zip's bytes, or a folder's files and their names."""
    if path.is_dir():
        return "folder", sha256_tree(path)[0]
    if path.is_file():
        return "zip", sha256_file(path)
    raise VulnDatabaseError(f"vulnerability database {path} does not exist")


def _open_cached(index_path: Path, digest: str) -> sqlite3.Connection | None:
    if not index_path.is_file():
        return None
    try:
        connection = sqlite3.connect(f"file:{index_path}?mode=ro", uri=True)
        meta = _meta(connection)
    except sqlite3.Error:
        return None  # a damaged cache entry is rebuilt, not reported
    if meta.get("schema") == str(INDEX_SCHEMA) and meta.get("sha256") == digest:
        return connection
    connection.close()
    return None


def _build_cached(source: Path, digest: str, index_path: Path) -> sqlite3.Connection | None:
    """Build into a temporary file beside the cache entry, then rename it into place."""
    try:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=index_path.parent, suffix=".tmp")
    except OSError:
        return None
    os.close(handle)
    try:
        with closing(sqlite3.connect(temporary)) as connection:
            _build(source, digest, connection)
        os.replace(temporary, index_path)
    except (OSError, sqlite3.Error):
        Path(temporary).unlink(missing_ok=True)
        return None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return sqlite3.connect(f"file:{index_path}?mode=ro", uri=True)


def open_database(
    path: Path, progress: Callable[[str], None] = lambda _: None
) -> VulnerabilityIndex:
    """The index of the OSV export at ``path``: from the cache, else built (and cached)."""
    kind, digest = database_digest(path)
    index_path = cache_dir() / "osv" / f"index-v{INDEX_SCHEMA}-{digest}.sqlite"
    how = "cached"
    connection = _open_cached(index_path, digest)
    if connection is None:
        progress(f"indexing vulnerability database {path}")
        how = "built"
        connection = _build_cached(path, digest, index_path)
    if connection is None:
        how = "memory"
        connection = sqlite3.connect(":memory:")
        _build(path, digest, connection)
    meta = _meta(connection)
    info = DatabaseInfo(
        path=str(path),
        kind=kind,
        sha256=digest,
        records=int(meta["records"]),
        withdrawn=int(meta["withdrawn"]),
        packages=int(meta["packages"]),
        newest_modified=meta["newest_modified"] or None,
        index=how,
    )
    return VulnerabilityIndex(connection, info)

