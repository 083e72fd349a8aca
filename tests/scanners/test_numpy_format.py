"""Tests of the NumPy scanners (mlaudit.scanners.numpy_format).

Numeric .npy/.npz files written by numpy scan clean with no pickle at all; object arrays are
scanned as the pickle numpy.load(allow_pickle=True) would run; headers are parsed with
ast.literal_eval only, and every malformed header is an MLA107 issue; mutated files always
give a report.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaudit.core.findings import Severity
from mlaudit.scanners.format_report import FormatReport
from mlaudit.scanners.numpy_format import NPY_MAGIC, scan_npy, scan_npz
from mlaudit.scanners.pickle_policy import Verdict, classify
from tests.fixtures.benign_archives import BENIGN_SAMPLE_NAMES, BenignSample, build_benign_archives
from tests.fixtures.hostile_pickles import _system
from tests.fixtures.mutation import EDITS, mutate
from tests.scanners.test_archive import assert_reports_quickly

NUMPY_SAMPLES = [n for n in BENIGN_SAMPLE_NAMES if n.startswith(("npy", "npz"))]


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BenignSample]:
    samples = build_benign_archives(tmp_path_factory.mktemp("benign-numpy"), NUMPY_SAMPLES)
    return {sample.name: sample for sample in samples}


def _npy(array: Any, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), version=version, allow_pickle=True)
    return buffer.getvalue()


def _raw_npy(header: str | bytes, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    encoded = header.encode("latin1") if isinstance(header, str) else header
    length = struct.pack("<H" if version == (1, 0) else "<I", len(encoded))
    return NPY_MAGIC + bytes(version) + length + encoded + data


def _scan_bytes(tmp_path: Path, data: bytes) -> FormatReport:
    path = tmp_path / "x.npy"
    path.write_bytes(data)
    return scan_npy(path)


def _kinds(report: FormatReport) -> dict[str, Severity]:
    return {f.key.split(":", 1)[0]: f.severity for f in report.issues}


def _imports(report: FormatReport) -> set[str]:
    return {i.qualified_name for p in report.pickles for i in p.scan.imports}


# ============================================================================================
# Benign


@pytest.mark.parametrize("name", NUMPY_SAMPLES)
def test_numeric_numpy_files_are_clean(name: str, benign: dict[str, BenignSample]) -> None:
    sample = benign[name]
    report = (scan_npy if sample.scanner == "npy" else scan_npz)(sample.path)
    assert report.issues == ()
    assert report.pickles == ()  # numeric data is never read as a pickle
    assert report.format_detail == sample.scanner


def test_benign_object_array_is_scanned_not_flagged(tmp_path: Path) -> None:
    report = _scan_bytes(tmp_path, _npy(np.array(["a", None, 1.5, {"k": [1, 2]}], dtype=object)))
    assert report.issues == ()
    [embedded] = report.pickles
    assert embedded.member is None
    assert embedded.scan.problems == ()
    assert _imports(report)
    for found in embedded.scan.imports:
        assert classify(found.module, found.name).verdict is not Verdict.DANGEROUS


def test_structured_dtype_with_object_field_is_a_pickle(tmp_path: Path) -> None:
    array = np.array([(1, _system(tmp_path / "c"))], dtype=[("id", "<i4"), ("obj", "O")])
    data = _npy(array)
    report = _scan_bytes(tmp_path, data)
    [embedded] = report.pickles
    hostile = [i for i in embedded.scan.imports if i.name == "system"]
    assert hostile
    header_end = data.index(b"\n") + 1
    assert all(i.offset >= header_end for i in hostile)  # offsets are file offsets


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_header_version(tmp_path: Path, version: tuple[int, int]) -> None:
    report = _scan_bytes(tmp_path, _npy(np.arange(5, dtype=np.int16), version))
    assert report.issues == ()


def test_python2_long_suffix_header(tmp_path: Path) -> None:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L), }\n"
    report = _scan_bytes(tmp_path, _raw_npy(header, bytes(48)))
    assert report.issues == ()


# ============================================================================================
# Malformed headers


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)", bytes(8)), "syntax"),
        (_raw_npy("[1, 2, 3]"), "not a dict"),
        (_raw_npy("{'descr': '<f8', 'shape': (1,)}"), "missing key"),
        (_raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}"), "extra key"),
        (_raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': [1]}"), "shape list"),
        (_raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}"), "negative"),
        (_raw_npy("{'descr': '<f8', 'fortran_order': 0, 'shape': (1,)}"), "fortran int"),
        (_raw_npy("{'descr': 'not-a-dtype', 'fortran_order': False, 'shape': (1,)}"), "descr"),
        (_raw_npy("{'descr': ('<f8', (10**30,)), 'fortran_order': False, 'shape': ()}"),
         "huge subarray"),
        (_raw_npy("__import__('os').system('true')"), "code"),
        (_raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", version=(4, 0)),
         "version"),
        (NPY_MAGIC + b"\x01\x00\xff\xff" + b"{", "truncated header"),
        (NPY_MAGIC + b"\x01", "no version"),
        (_raw_npy(b"\xff\xfe{}", version=(3, 0)), "not utf8"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_malformed_header_is_mla107(tmp_path: Path, data: bytes, why: str) -> None:
    report = _scan_bytes(tmp_path, data)
    [found] = report.issues
    assert found.rule_id == "MLA107", why
    assert found.key == "npy-header"
    assert found.severity is Severity.HIGH
    assert report.pickles == ()


def test_oversized_header_is_not_parsed(tmp_path: Path) -> None:
    data = NPY_MAGIC + b"\x02\x00" + struct.pack("<I", 50 * 1024**2) + b"{"
    report = _scan_bytes(tmp_path, data)
    assert report.issues[0].evidence["bytes"] == 50 * 1024**2


def test_data_shorter_or_longer_than_declared(tmp_path: Path) -> None:
    data = _npy(np.arange(10.0))
    short = _scan_bytes(tmp_path, data[:-8])
    assert _kinds(short) == {"npy-truncated": Severity.MEDIUM}
    long = _scan_bytes(tmp_path, data + b"\x80\x04hidden")
    assert _kinds(long) == {"npy-trailing-data": Severity.MEDIUM}


def test_file_without_magic_is_scanned_as_the_pickle_numpy_load_would_run(
    tmp_path: Path,
) -> None:
    import pickle

    report = _scan_bytes(tmp_path, pickle.dumps(_system(tmp_path / "c"), protocol=2))
    assert "not-npy" in _kinds(report)
    assert any(i.name == "system" for i in report.pickles[0].scan.imports)


def test_truncated_object_pickle_is_mla101(tmp_path: Path) -> None:
    data = _npy(np.array([_system(tmp_path / "c")], dtype=object))
    report = _scan_bytes(tmp_path, data[:-3])
    [malformed] = [f for f in report.issues if f.rule_id == "MLA101"]
    assert malformed.key == "malformed-pickle"
    assert malformed.severity is Severity.HIGH
    assert any(i.name == "system" for i in report.pickles[0].scan.imports)


# ============================================================================================
# npz


def test_npz_member_without_magic_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("a.npy", _npy(np.arange(3)))
        out.writestr("notes.txt", b"numpy.load hands this back as bytes")
    report = scan_npz(path)
    assert report.issues == ()
    assert report.members == 2


def test_npz_member_bomb_is_not_scanned(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("zeros.npy", _npy(np.zeros(2 * 1024**2)))
    report = scan_npz(path)
    assert _kinds(report)["decompression-bomb"] is Severity.CRITICAL
    assert report.pickles == ()


def test_npz_every_duplicate_is_scanned(tmp_path: Path) -> None:
    import warnings

    path = tmp_path / "dup.npz"
    with zipfile.ZipFile(path, "w") as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.writestr("x.npy", _npy(np.array([_system(tmp_path / "c")], dtype=object)))
        out.writestr("x.npy", _npy(np.arange(3)))
    report = scan_npz(path)
    assert "duplicate-member" in _kinds(report)
    assert [p.member for p in report.pickles] == ["x.npy"]
    assert any(i.name == "system" for i in report.pickles[0].scan.imports)


def test_unreadable_npz_is_an_issue(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really")
    report = scan_npz(path)
    assert "unreadable-zip" in _kinds(report)


# ============================================================================================
# Properties


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    npz_plain, npz_compressed = io.BytesIO(), io.BytesIO()
    arrays: dict[str, Any] = {"a": np.arange(20.0), "o": np.array(["x", None, 2], dtype=object)}
    np.savez(npz_plain, **arrays)
    np.savez_compressed(npz_compressed, **arrays)
    return [
        _npy(np.arange(12.0).reshape(3, 4)),
        _npy(np.array(["x", None, {"k": 1}], dtype=object)),
        _npy(np.zeros(3, dtype=[("a", "<i4"), ("b", "O")])),
        npz_plain.getvalue(),
        npz_compressed.getvalue(),
    ]


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), edits=EDITS)
def test_mutated_npy_always_reports(
    seeds: list[bytes], which: int, edits: list[tuple[str, int, bytes]]
) -> None:
    assert_reports_quickly(scan_npy, mutate(seeds[which], edits))


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(which=st.integers(3, 4), edits=EDITS)
def test_mutated_npz_always_reports(
    seeds: list[bytes], which: int, edits: list[tuple[str, int, bytes]]
) -> None:
    assert_reports_quickly(scan_npz, mutate(seeds[which], edits))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(header=st.text(max_size=200))
def test_arbitrary_header_text_always_reports(header: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        report = _scan_bytes(Path(directory), _raw_npy(header.encode("utf8"), version=(3, 0)))
    assert isinstance(report, FormatReport)
