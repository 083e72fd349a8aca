"""The archive: content-addressed files, a hash-chained log, an SQLite index, and tampering."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlaudit.compliance.archive import Archive, ArchiveIntegrityError, Problem, Query
from mlaudit.compliance.attest import load_verify_key
from mlaudit.core.errors import UsageError
from tests.compliance_helpers import keys, report, resign, scan
from tests.conftest import Runner, Workspace

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Signed:
    report: bytes
    envelope: bytes


@dataclass(frozen=True)
class Material:
    """Signed reports of one real scan, varied (grade, score, date), and the keys."""

    signed: tuple[Signed, ...]
    private: Path
    public: Path


@pytest.fixture(scope="module")
def material(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Material:
    root = tmp_path_factory.mktemp("material")
    private, public = keys(root / "keys")
    assert scan(root / "report", workspace.rf_joblib, "--select", "MLA1") == 0
    base = report(root / "report")
    signed = []
    for n in range(40):
        document = json.loads(json.dumps(base))
        document["run"]["id"] = f"00000000-0000-4000-8000-{n:012d}"
        document["run"]["finished_at"] = f"2026-0{1 + n % 9}-1{n % 10}T12:00:00Z"
        document["score"] = 100.0 - n
        document["grade"] = "A" if n < 10 else "B" if n < 20 else "F"
        document["gate"]["passed"] = n < 20
        signed.append(Signed(*resign(document, private)))
    return Material(tuple(signed), private, public)


def filled(root: Path, material: Material, count: int) -> Archive:
    archive = Archive.open(root, create=True)
    for item in material.signed[:count]:
        archive.add(item.envelope, item.report, datetime.now(UTC))
    return archive


def kinds(problems: list[Problem]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in problems:
        found.setdefault(problem.kind, []).append(problem.message)
    return found


def lines(archive: Archive) -> list[bytes]:
    return archive.log.read_bytes().splitlines()


def rewrite(archive: Archive, new_lines: list[bytes]) -> None:
    archive.log.write_bytes(b"".join(line + b"\n" for line in new_lines))


# --------------------------------------------------------------------------- sound archives


def test_add_list_show_and_verify(material: Material, tmp_path: Path) -> None:
    archive = filled(tmp_path, material, 5)
    entries = archive.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev == "0" * 64
    assert all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    assert archive.verify(load_verify_key(material.public)) == []
    assert archive.head() == entries[-1].hash
    stored = archive.object_path(entries[2].envelope)
    assert stored.read_bytes() == material.signed[2].envelope
    assert archive.object_path(entries[2].report or "").read_bytes() == material.signed[2].report
    assert archive.find("3") == entries[2] == archive.find(entries[2].envelope[:10])
    with pytest.raises(UsageError):
        archive.find("99")


def test_adding_an_envelope_twice_returns_its_entry(material: Material, tmp_path: Path) -> None:
    archive = filled(tmp_path, material, 2)
    entry, added = archive.add(material.signed[0].envelope, None, datetime.now(UTC))
    assert (entry.seq, added) == (1, False)
    assert len(archive.entries()) == 2


def test_a_report_that_is_not_the_attested_one_is_refused(
    material: Material, tmp_path: Path
) -> None:
    archive = Archive.open(tmp_path, create=True)
    with pytest.raises(UsageError, match="not the one the envelope attests"):
        archive.add(material.signed[0].envelope, material.signed[1].report, datetime.now(UTC))
    with pytest.raises(UsageError, match="not an mlaudit attestation"):
        archive.add(material.signed[0].report, None, datetime.now(UTC))


def test_queries(material: Material, tmp_path: Path) -> None:
    archive = filled(tmp_path, material, 25)
    sha = archive.entries()[0].model_sha256 or ""
    assert len(archive.entries(Query(model="rf.job"))) == 25
    assert archive.entries(Query(model="other")) == []
    assert len(archive.entries(Query(sha256=sha[:8].upper()))) == 25
    assert {e.grade for e in archive.entries(Query(grade="b"))} == {"B"}
    assert len(archive.entries(Query(gate_passed=False))) == 5
    january = archive.entries(Query(since="2026-01-01", until="2026-01-31"))
    assert {e.audited_at[:7] for e in january} == {"2026-01"}
    assert len(january) == 3


# --------------------------------------------------------------------------- tampering


@pytest.fixture
def archive(material: Material, tmp_path: Path) -> Archive:
    return filled(tmp_path / "store", material, 6)


def _edit(line: bytes, **changes: object) -> bytes:
    document = json.loads(line)
    document.update(changes)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_an_edited_entry_is_named(archive: Archive) -> None:
    log = lines(archive)
    log[2] = _edit(log[2], grade="F", gate_passed=False)
    rewrite(archive, log)
    found = kinds(archive.verify())
    assert "entry 3 (line 3) was edited" in found["edited"]
    assert found["chain"] == ["line 4 does not name line 3's hash as prev"]


def test_an_edited_last_entry_is_named(archive: Archive) -> None:
    log = lines(archive)
    log[-1] = log[-1].replace(b'"grade":"A"', b'"grade":"B"')
    rewrite(archive, log)
    assert "entry 6 (line 6) was edited" in kinds(archive.verify())["edited"]


def test_an_entry_edited_into_garbage_is_named(archive: Archive) -> None:
    log = lines(archive)
    log[1] = b"{not json"
    rewrite(archive, log)
    assert kinds(archive.verify())["edited"] == ["entry 2 (line 2) was edited"]


def test_a_deleted_entry_is_named(archive: Archive) -> None:
    log = lines(archive)
    del log[3]
    rewrite(archive, log)
    found = kinds(archive.verify())
    assert found["deleted"] == ["entry 4 was deleted from the log"]
    assert "inserted" not in found


def test_a_deleted_last_entry_is_named(archive: Archive) -> None:
    rewrite(archive, lines(archive)[:-1])
    assert kinds(archive.verify()) == {"deleted": ["entry 6 was deleted from the log"]}


def test_reordered_entries_are_named(archive: Archive) -> None:
    log = lines(archive)
    log[1], log[2] = log[2], log[1]
    rewrite(archive, log)
    found = kinds(archive.verify())
    assert found["reordered"] == ["entry 2 (line 3) comes after entry 3"]
    assert "edited" not in found
    assert "deleted" not in found


def test_an_inserted_entry_is_named(archive: Archive) -> None:
    log = lines(archive)
    forged = _edit(log[2], seq=4, envelope="f" * 64)
    log.insert(3, forged)
    rewrite(archive, log)
    found = kinds(archive.verify())
    assert found["inserted"] == ["line 4 is not an archived entry (inserted)"]
    assert "edited" not in found
    assert "deleted" not in found


def test_a_changed_stored_file_is_named(archive: Archive) -> None:
    entry = archive.find("2")
    path = archive.object_path(entry.envelope)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    report_path = archive.object_path(entry.report or "")
    os.chmod(report_path, 0o644)
    report_path.write_bytes(report_path.read_bytes() + b" ")
    found = kinds(archive.verify())
    assert found["changed-file"] == [
        f"entry 2: envelope {path} was changed", f"entry 2: report {report_path} was changed"
    ]


def test_a_missing_stored_file_is_named(archive: Archive) -> None:
    path = archive.object_path(archive.find("5").envelope)
    path.unlink()
    assert kinds(archive.verify())["missing-file"] == [f"entry 5: envelope {path} is missing"]


def test_an_edited_index_row_is_named(archive: Archive) -> None:
    with sqlite3.connect(archive.index) as connection:
        connection.execute("UPDATE entries SET grade = 'F', gate_passed = 0 WHERE seq = 2")
    assert kinds(archive.verify()) == {"index": ["index row 2 differs from its log entry"]}


def test_a_consistently_rewritten_entry_is_caught_by_its_envelope(archive: Archive) -> None:
    """Log line, chain and index all rewritten to match: the envelope still says otherwise."""
    log = lines(archive)
    entries = [json.loads(line) for line in log]
    entries[-1]["grade"] = "F"
    entries[-1]["gate_passed"] = False
    new_line = json.dumps(entries[-1], sort_keys=True, separators=(",", ":")).encode()
    log[-1] = new_line
    rewrite(archive, log)
    digest = hashlib.sha256(new_line).hexdigest()
    with sqlite3.connect(archive.index) as connection:
        connection.execute(
            "UPDATE entries SET grade = 'F', gate_passed = 0, hash = ? WHERE seq = 6", (digest,)
        )
    found = kinds(archive.verify())
    assert found == {"edited": ["entry 6 (line 6) disagrees with its envelope: gate_passed, grade"]}


def test_anchored_head_and_signatures(archive: Archive, material: Material, tmp_path: Path) -> None:
    head = archive.head() or ""
    assert archive.verify(head=head) == []
    unknown = "ab" * 32
    assert kinds(archive.verify(head=unknown))["head"] == [
        f"no entry has the anchored hash {unknown}"
    ]
    _, stranger = keys(tmp_path / "stranger")
    found = kinds(archive.verify(load_verify_key(stranger)))
    assert len(found["signature"]) == 6


def test_a_tampered_archive_is_not_extended(archive: Archive, material: Material) -> None:
    rewrite(archive, lines(archive)[:-1])
    with pytest.raises(ArchiveIntegrityError):
        archive.add(material.signed[10].envelope, None, datetime.now(UTC))


# --------------------------------------------------------------------------- the commands


def test_archive_commands(run_cli: Runner, material: Material, tmp_path: Path) -> None:
    store = tmp_path / "store"
    for n in range(2):
        (tmp_path / f"r{n}").mkdir()
        (tmp_path / f"r{n}" / "report.json").write_bytes(material.signed[n].report)
        (tmp_path / f"r{n}" / "report.intoto.json").write_bytes(material.signed[n].envelope)
        added = run_cli("archive", "add", tmp_path / f"r{n}" / "report.intoto.json",
                        "--store", store)
        assert added.exit_code == 0, added.stderr
        assert f"archived as entry {n + 1}" in added.stdout
    listed = run_cli("archive", "list", "--store", store, "--json")
    assert [e["seq"] for e in json.loads(listed.stdout)] == [1, 2]
    assert json.loads(listed.stdout)[0]["report"] is not None  # found beside the envelope
    table = run_cli("archive", "list", "--store", store, "--gate", "passed")
    assert "rf.joblib" in table.stdout
    january = run_cli("archive", "list", "--store", store, "--since", "2026-01-01",
                      "--until", "2026-01-31", "--json")
    assert [e["seq"] for e in json.loads(january.stdout)] == [1]
    assert run_cli("archive", "list", "--store", store, "--since", "soon").exit_code == 2
    shown = run_cli("archive", "show", "2", "--store", store)
    assert json.loads(shown.stdout)["seq"] == 2
    raw = run_cli("archive", "show", "1", "--store", store, "--raw", "report")
    assert raw.stdout.encode() == material.signed[0].report
    ok = run_cli("archive", "verify", "--store", store, "--key", material.public)
    assert ok.exit_code == 0
    assert "archive ok: 2 entries" in ok.stdout
    log = store / "log.jsonl"
    log.write_bytes(log.read_bytes().splitlines(keepends=True)[0])
    failed = run_cli("archive", "verify", "--store", store)
    assert failed.exit_code == 1
    assert "FAIL  deleted: entry 2 was deleted from the log" in failed.stdout
    refused = run_cli("archive", "add", tmp_path / "r0" / "report.intoto.json", "--store", store)
    assert refused.exit_code == 0  # already archived: nothing is appended
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "e.json").write_bytes(material.signed[2].envelope)
    refused = run_cli("archive", "add", tmp_path / "r2" / "e.json", "--store", store)
    assert refused.exit_code == 1
    assert "does not verify" in refused.stderr
    missing = run_cli("archive", "list", "--store", tmp_path / "nowhere")
    assert missing.exit_code == 2
    assert "not an mlaudit archive" in missing.stderr


# --------------------------------------------------------------------------- concurrency


def test_concurrent_adds_from_threads_and_processes_keep_the_archive_consistent(
    material: Material, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    Archive.open(store, create=True)
    envelopes = []
    for n, item in enumerate(material.signed):
        path = tmp_path / f"e{n}.json"
        path.write_bytes(item.envelope)
        envelopes.append(path)
    # Two processes, each adding 8 envelopes, 4 of them also added by the other.
    script = (
        "import sys\nfrom mlaudit.cli.main import main\n"
        "for path in sys.argv[2:]:\n"
        "    try:\n        main(['archive', 'add', path, '--store', sys.argv[1]])\n"
        "    except SystemExit as e:\n        assert e.code in (0, None), e.code\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(store), *map(str, envelopes[start:start + 8])],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for start in (0, 4)
    ]
    errors: list[BaseException] = []

    def add(chunk: list[Path]) -> None:
        try:
            archive = Archive(store)
            for path in chunk:
                archive.add(path.read_bytes(), None, datetime.now(UTC))
        except BaseException as error:  # reported by the test, not lost in a thread
            errors.append(error)

    threads = [threading.Thread(target=add, args=(envelopes[12 + 4 * n:20 + 4 * n],))
               for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
    assert errors == []
    archive = Archive(store)
    entries = archive.entries()
    assert len(entries) == len({e.envelope for e in entries}) == 40
    assert [e.seq for e in entries] == list(range(1, 41))
    assert archive.verify() == []


def test_a_hash_prefix_of_decimal_digits_is_found_not_read_as_a_sequence_number(
    material: Material, tmp_path: Path
) -> None:
    # About 1% of 10-character prefixes are all digits; once, an entry's envelope digest began
    # "7928131234" and `find` read it as entry number 7,928,131,234. The index row is rewritten
    # here to such a digest (find only reads the index).
    archive = filled(tmp_path, material, 3)
    entry = archive.entries()[1]
    digits = "7928131234" + entry.envelope[10:]
    with contextlib.closing(sqlite3.connect(archive.index)) as connection, connection:
        connection.execute("UPDATE entries SET envelope = ? WHERE seq = 2", (digits,))
    assert archive.find(digits[:10]).seq == 2
    assert archive.find("2").seq == 2
