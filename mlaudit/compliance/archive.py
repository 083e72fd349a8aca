"""A tamper-evident archive of attestations: content-addressed files, a hash-chained log, an index.

Layout of a store ``DIR``::

    DIR/objects/sha256/ab/abcdef…   envelopes and reports, named by their sha256, read-only
    DIR/log.jsonl                   one entry per line, append-only; each carries the sha256
                                    of the line before it ("prev"; zeros for the first)
    DIR/index.sqlite                the entries again, for queries (model, date, grade, gate)
    DIR/.lock                       serialises writers (flock), across threads and processes

The log is the record; the chain makes an edit, a deletion, a reordering or an insertion
break the link after it, and the index, written in the same locked step, is a second witness
that says which entry it was (it knows every entry's sequence number and hash). Stored files
are checked against the digest they are named by. Someone who can rewrite the log, the index
and the files together can forge a consistent history: print the head hash ``archive add``
and ``archive verify`` report into a release ticket or another system, and ``archive verify
--head HASH`` proves the archive still contains it; ``--key`` also checks every envelope's
signature.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mlaudit.compliance.attest import (
    VerificationError,
    attested_files,
    authenticate,
    read_statement,
)
from mlaudit.core.errors import UsageError
from mlaudit.core.hashing import sha256_file

GENESIS = "0" * 64
LOG_NAME, INDEX_NAME, LOCK_NAME = "log.jsonl", "index.sqlite", ".lock"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    prev TEXT NOT NULL,
    added_at TEXT NOT NULL,
    envelope TEXT NOT NULL UNIQUE,
    report TEXT,
    model_name TEXT,
    model_sha256 TEXT,
    audited_at TEXT NOT NULL,
    grade TEXT NOT NULL,
    score REAL NOT NULL,
    gate_passed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_model_sha256 ON entries (model_sha256);
CREATE INDEX IF NOT EXISTS entries_audited_at ON entries (audited_at);
"""


class ArchiveIntegrityError(Exception):
    """The archive does not verify; it is not extended (exit 1)."""


@dataclass(frozen=True)
class Entry:
    """One log line. Its fields are what the index holds, so a query never opens a file."""

    seq: int
    prev: str
    added_at: str
    envelope: str
    report: str | None
    model_name: str | None
    model_sha256: str | None
    audited_at: str
    grade: str
    score: float
    gate_passed: bool

    def line(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.line()).hexdigest()

    @staticmethod
    def from_line(line: bytes) -> Entry:
        """The entry a line holds; ValueError unless it is exactly as written."""
        document = json.loads(line)
        if not isinstance(document, dict) or set(document) != {f.name for f in fields(Entry)}:
            raise ValueError("not an archive entry")
        entry = Entry(**document)
        if entry.line() != line:
            raise ValueError("not in the form the archive writes")
        return entry


@dataclass(frozen=True)
class Problem:
    kind: str  # edited, deleted, reordered, inserted, chain, changed-file, missing-file, ...
    message: str


@dataclass(frozen=True)
class Query:
    model: str | None = None  # part of the model's name
    sha256: str | None = None  # a prefix of the model's sha256
    since: str | None = None  # ISO date or time, compared with the audit time
    until: str | None = None
    grade: str | None = None
    gate_passed: bool | None = None


def _summary(statement: Mapping[str, Any]) -> dict[str, Any]:
    predicate = statement["predicate"]
    models = attested_files(statement, model=True)
    name, digest = models[0] if models else (None, None)
    return {
        "report": predicate["report"].get("sha256"),
        "model_name": Path(name).name if name else None,
        "model_sha256": digest,
        "audited_at": str(predicate["auditedAt"]),
        "grade": str(predicate["grade"]),
        "score": float(predicate["score"]),
        "gate_passed": predicate["gate"].get("passed") is True,
    }


class Archive:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / LOG_NAME
        self.index = root / INDEX_NAME

    @staticmethod
    def open(root: Path, *, create: bool = False) -> Archive:
        archive = Archive(root)
        if create:
            try:
                (root / "objects" / "sha256").mkdir(parents=True, exist_ok=True)
                archive.log.touch(exist_ok=True)
            except OSError as error:
                raise UsageError(f"cannot create the archive {root}: {error.strerror}") from None
            with archive._connect() as connection:
                connection.executescript(_SCHEMA)
        elif not archive.log.is_file() or not archive.index.is_file():
            raise UsageError(f"{root} is not an mlaudit archive (no {LOG_NAME} or {INDEX_NAME})")
        return archive

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        connection = sqlite3.connect(self.index, timeout=60, isolation_level=None)
        connection.row_factory = sqlite3.Row
        return connection

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time. flock locks an open file description, so two threads that
        each open the lock file exclude each other as two processes do."""
        with (self.root / LOCK_NAME).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def object_path(self, digest: str) -> Path:
        return self.root / "objects" / "sha256" / digest[:2] / digest

    def _store(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.object_path(digest)
        if path.is_file() and sha256_file(path) == digest:
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o444)
        os.replace(temporary, path)
        return digest

    def add(self, envelope: bytes, report: bytes | None, now: datetime) -> tuple[Entry, bool]:
        """Archive an envelope (and the report it attests); returns the entry and whether it
        is new. Adding an envelope already archived returns its entry unchanged."""
        try:
            statement = read_statement(envelope)
        except VerificationError as error:
            raise UsageError(f"not an mlaudit attestation: {error}") from None
        summary = _summary(statement)
        if report is not None and hashlib.sha256(report).hexdigest() != summary["report"]:
            raise UsageError("the report is not the one the envelope attests (sha256 differs)")
        envelope_digest = hashlib.sha256(envelope).hexdigest()
        with self._locked(), contextlib.closing(self._connect()) as connection:
            existing = connection.execute(
                "SELECT * FROM entries WHERE envelope = ?", (envelope_digest,)
            ).fetchone()
            if existing is not None:
                return _entry(existing), False
            last = self._check_tail(connection)
            self._store(envelope)
            if report is not None:
                self._store(report)
            entry = Entry(
                seq=last.seq + 1 if last else 1,
                prev=last.hash if last else GENESIS,
                added_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                envelope=envelope_digest,
                **{**summary, "report": summary["report"] if report is not None else None},
            )
            self._append(connection, entry)
        return entry, True

    def _check_tail(self, connection: sqlite3.Connection) -> Entry | None:
        """The last entry, when the log and the index agree on it; a new entry must never
        extend a history that no longer verifies."""
        lines = self._lines()
        row = connection.execute("SELECT * FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        indexed = _entry(row) if row is not None else None
        logged = _parse(lines[-1]) if lines else None
        count = connection.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        if logged != indexed or count != len(lines):
            raise ArchiveIntegrityError(
                f"the archive {self.root} does not verify (run `mlaudit archive verify`); "
                "not adding to it"
            )
        return logged

    def _append(self, connection: sqlite3.Connection, entry: Entry) -> None:
        """Index row and log line in one step: the row commits only after the line is on disk,
        and a line whose row cannot commit is cut off again."""
        connection.execute("BEGIN IMMEDIATE")
        size = self.log.stat().st_size
        try:
            connection.execute(
                "INSERT INTO entries VALUES (:seq, :hash, :prev, :added_at, :envelope, :report, "
                ":model_name, :model_sha256, :audited_at, :grade, :score, :gate_passed)",
                {**asdict(entry), "hash": entry.hash},
            )
            with self.log.open("ab") as stream:
                stream.write(entry.line() + b"\n")
                stream.flush()
                os.fsync(stream.fileno())
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            with self.log.open("r+b") as stream:
                stream.truncate(size)
            raise

    def _lines(self) -> list[bytes]:
        data = self.log.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return lines

    def entries(self, query: Query = Query()) -> list[Entry]:
        clauses, values = [], []
        conditions: Sequence[tuple[object, str, object]] = (
            (query.model, "instr(model_name, ?) > 0", query.model),
            (query.sha256, "model_sha256 LIKE ?", f"{(query.sha256 or '').lower()}%"),
            (query.since, "audited_at >= ?", query.since),
            # An end date covers that whole day: "2026-05-01" sorts before "2026-05-01T…".
            (query.until, "audited_at < ?", f"{query.until}\uffff"),
            (query.grade, "grade = ?", (query.grade or "").upper()),
            (query.gate_passed, "gate_passed = ?", query.gate_passed),
        )
        for given, clause, value in conditions:
            if given is not None:
                clauses.append(clause)
                values.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with contextlib.closing(self._connect()) as connection:
            rows = connection.execute(
                f"SELECT * FROM entries{where} ORDER BY seq",  # noqa: S608 (fixed clauses)
                values,
            ).fetchall()
        return [_entry(row) for row in rows]

    def find(self, identifier: str) -> Entry:
        """An entry by sequence number, or by a prefix (8+ hex digits) of its hash or its
        envelope's sha256."""
        text = identifier.strip().lower()
        with contextlib.closing(self._connect()) as connection:
            if text.isdigit() and len(text) < 8:
                rows = connection.execute("SELECT * FROM entries WHERE seq = ?", (int(text),))
            elif len(text) >= 8 and all(c in "0123456789abcdef" for c in text):
                # A hash prefix can be all decimal digits (about 1% of 10-digit prefixes): 8+
                # characters are read as a prefix, and as a sequence number too when they are
                # digits, so an identifier that matches both is ambiguous, never guessed.
                rows = connection.execute(
                    "SELECT * FROM entries WHERE seq = ? OR hash LIKE ? OR envelope LIKE ?",
                    (int(text) if text.isdigit() else -1, f"{text}%", f"{text}%"),
                )
            else:
                raise UsageError(f"{identifier!r}: give an entry number or 8+ hex digits")
            found = rows.fetchall()
        if len(found) != 1:
            raise UsageError(
                f"no archive entry {identifier!r}" if not found
                else f"{identifier!r} matches {len(found)} entries; give more digits"
            )
        return _entry(found[0])

    def head(self) -> str | None:
        lines = self._lines()
        return hashlib.sha256(lines[-1]).hexdigest() if lines else None

    def verify(
        self, public_key: Ed25519PublicKey | None = None, head: str | None = None
    ) -> list[Problem]:
        """Every problem found, each naming the entry or file it concerns; empty when sound."""
        lines = self._lines()
        with contextlib.closing(self._connect()) as connection:
            indexed = {row["seq"]: row for row in connection.execute("SELECT * FROM entries")}
        problems = _check_log(lines, indexed)
        for position, line in enumerate(lines, 1):
            entry = _parse(line)
            if entry is not None:
                problems += self._check_files(entry, position, public_key)
        if head is not None and head.lower() not in {
            hashlib.sha256(line).hexdigest() for line in lines
        }:
            problems.append(Problem("head", f"no entry has the anchored hash {head}"))
        return problems

    def _check_files(
        self, entry: Entry, position: int, public_key: Ed25519PublicKey | None
    ) -> list[Problem]:
        problems = []
        stored = {"envelope": entry.envelope, "report": entry.report}
        contents: dict[str, bytes] = {}
        for what, digest in stored.items():
            if digest is None:
                continue
            path = self.object_path(digest)
            try:
                contents[what] = path.read_bytes()
            except OSError:
                message = f"entry {entry.seq}: {what} {path} is missing"
                problems.append(Problem("missing-file", message))
                continue
            actual = hashlib.sha256(contents[what]).hexdigest()
            if actual != digest:
                problems.append(
                    Problem("changed-file", f"entry {entry.seq}: {what} {path} was changed")
                )
                del contents[what]
        envelope = contents.get("envelope")
        if envelope is None:
            return problems
        try:
            summary = _summary(read_statement(envelope))
        except VerificationError as error:
            return [*problems, Problem("malformed", f"entry {entry.seq}: envelope: {error}")]
        recorded = asdict(entry)
        differs = sorted(
            key for key, value in summary.items()
            if recorded[key] != value and not (key == "report" and recorded[key] is None)
        )
        if differs:
            problems.append(
                Problem(
                    "edited",
                    f"entry {entry.seq} (line {position}) disagrees with its envelope: "
                    f"{', '.join(differs)}",
                )
            )
        if public_key is not None:
            failed = authenticate(envelope, public_key).failed
            if failed:
                problems.append(
                    Problem("signature", f"entry {entry.seq}: envelope: {failed[0].detail}")
                )
        return problems


def _entry(row: sqlite3.Row) -> Entry:
    values = {f.name: row[f.name] for f in fields(Entry)}
    return Entry(**{**values, "gate_passed": bool(values["gate_passed"])})


def _check_log(lines: Sequence[bytes], indexed: Mapping[int, sqlite3.Row]) -> list[Problem]:
    """The log against the index (which entry is affected) and against itself (the chain).

    Entries are appended in sequence, so entry k belongs on line k: a line there that the
    index does not know is entry k edited; an entry the index knows that is on no line, and
    not recognisable as an edited line, was deleted; any other unknown line was inserted.
    """
    hashes = [hashlib.sha256(line).hexdigest() for line in lines]
    parsed = [_parse(line) for line in lines]
    seq_by_hash = {row["hash"]: seq for seq, row in indexed.items()}
    unknown = {n for n, digest in enumerate(hashes, 1) if digest not in seq_by_hash}
    problems: list[Problem] = []
    for seq in sorted(indexed):
        if indexed[seq]["hash"] in hashes:
            continue
        claimed = [
            n for n in sorted(unknown) if (entry := parsed[n - 1]) is not None and entry.seq == seq
        ]
        line = seq if seq in unknown else (claimed[0] if claimed else None)
        if line is None:
            problems.append(Problem("deleted", f"entry {seq} was deleted from the log"))
        else:
            unknown.discard(line)
            problems.append(Problem("edited", f"entry {seq} (line {line}) was edited"))
    problems += [
        Problem("inserted", f"line {n} is not an archived entry (inserted)")
        for n in sorted(unknown)
    ]
    known = [(n, seq_by_hash[d]) for n, d in enumerate(hashes, 1) if d in seq_by_hash]
    for (_, before), (line, after) in itertools.pairwise(known):
        if after < before:
            problems.append(
                Problem("reordered", f"entry {after} (line {line}) comes after entry {before}")
            )
    for line, entry in enumerate(parsed, 1):
        expected = hashes[line - 2] if line > 1 else GENESIS
        if entry is not None and entry.prev != expected:
            problems.append(
                Problem("chain", f"line {line} does not name line {line - 1}'s hash as prev")
            )
    for digest, logged in zip(hashes, parsed, strict=True):
        row_seq = seq_by_hash.get(digest)
        if logged is not None and row_seq is not None and _entry(indexed[row_seq]) != logged:
            problems.append(Problem("index", f"index row {row_seq} differs from its log entry"))
    return problems


def _parse(line: bytes) -> Entry | None:
    try:
        return Entry.from_line(line)
    except ValueError:
        return None
