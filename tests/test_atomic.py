"""Tests for mlaudit.core.atomic.write_files_atomically: all files or none, no temp files left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlaudit.core import atomic
from mlaudit.core.atomic import write_files_atomically


def _listing(directory: Path) -> set[str]:
    return {entry.name for entry in directory.iterdir()}


def test_writes_every_file_with_full_content(tmp_path: Path) -> None:
    contents = {
        "report.json": b'{"ok": true}\n',
        "report.html": b"<html></html>",
        "empty.txt": b"",
        "big.bin": os.urandom(3 * (1 << 20) + 7),
    }
    written = write_files_atomically(tmp_path, contents)
    assert written == [tmp_path / name for name in contents]
    for name, data in contents.items():
        assert (tmp_path / name).read_bytes() == data
    assert _listing(tmp_path) == set(contents)


def test_creates_missing_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out"
    write_files_atomically(target, {"r.json": b"{}"})
    assert (target / "r.json").read_bytes() == b"{}"


def test_existing_files_are_replaced(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_bytes(b"old content that is longer than the new one")
    (tmp_path / "unrelated.txt").write_bytes(b"keep me")
    write_files_atomically(tmp_path, {"report.json": b"new"})
    assert (tmp_path / "report.json").read_bytes() == b"new"
    assert (tmp_path / "unrelated.txt").read_bytes() == b"keep me"
    assert _listing(tmp_path) == {"report.json", "unrelated.txt"}


def test_no_temporary_files_left_on_success(tmp_path: Path) -> None:
    write_files_atomically(tmp_path, {"a.json": b"1", "b.html": b"2", "c.sig": b"3"})
    assert not [name for name in _listing(tmp_path) if name.endswith(".tmp")]
    assert not [name for name in _listing(tmp_path) if name.startswith(".")]


def test_empty_mapping_writes_nothing(tmp_path: Path) -> None:
    assert write_files_atomically(tmp_path / "out", {}) == []
    assert _listing(tmp_path / "out") == set()


def _failing_fsync(
    monkeypatch: pytest.MonkeyPatch, fail_on_call: int, error: BaseException
) -> list[int]:
    calls: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == fail_on_call:
            raise error
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    return calls


@pytest.mark.parametrize("fail_on_call", [1, 2, 3])
def test_failure_leaves_no_temporaries_and_old_files_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on_call: int
) -> None:
    old = {"report.json": b"old json", "report.html": b"old html", "report.sig": b"old sig"}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    calls = _failing_fsync(monkeypatch, fail_on_call, OSError(28, "No space left on device"))

    with pytest.raises(OSError, match="No space left"):
        write_files_atomically(
            tmp_path,
            {"report.json": b"new json", "report.html": b"new html", "report.sig": b"new sig"},
        )

    assert len(calls) == fail_on_call
    assert _listing(tmp_path) == set(old)
    for name, data in old.items():
        assert (tmp_path / name).read_bytes() == data


def test_failure_on_second_file_creates_no_new_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_fsync(monkeypatch, 2, OSError(5, "I/O error"))
    with pytest.raises(OSError, match="I/O error"):
        write_files_atomically(tmp_path, {"a.json": b"a", "b.html": b"b"})
    assert _listing(tmp_path) == set()


def test_keyboard_interrupt_also_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.json").write_bytes(b"old")
    _failing_fsync(monkeypatch, 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write_files_atomically(tmp_path, {"a.json": b"new", "b.html": b"b"})
    assert _listing(tmp_path) == {"a.json"}
    assert (tmp_path / "a.json").read_bytes() == b"old"


def test_failure_in_write_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"old")
    with pytest.raises(TypeError):
        write_files_atomically(tmp_path, {"a.json": b"new", "b.html": "not bytes"})  # type: ignore[dict-item]
    assert _listing(tmp_path) == {"a.json"}
    assert (tmp_path / "a.json").read_bytes() == b"old"


def test_files_get_the_permissions_the_umask_gives(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        [written] = write_files_atomically(tmp_path, {"report.json": b"{}"})
    finally:
        os.umask(previous)
    assert written.stat().st_mode & 0o777 == 0o640
