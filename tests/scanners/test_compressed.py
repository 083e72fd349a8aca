"""Tests of compressed joblib files (mlaudit.scanners.compressed).

The compressor is sniffed as joblib sniffs it; scikit-learn models compressed with each of
joblib's compressors scan clean; bombs are stopped at the cap and never scanned; broken
streams are reported and what decompressed before the break is still scanned; mutated files
always give a report.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joblib.numpy_pickle_utils import _detect_compressor

from mlaudit.core.findings import Severity
from mlaudit.scanners.compressed import scan_compressed_joblib, sniff_compression
from mlaudit.scanners.containers import decompression_cap
from mlaudit.scanners.format_report import (
    MAX_COMPRESSION_RATIO,
    MAX_DECOMPRESSED_BYTES,
    FormatReport,
)
from mlaudit.scanners.pickle_policy import Verdict, classify
from tests.fixtures.benign_archives import (
    JOBLIB_COMPRESSORS,
    BenignSample,
    build_benign_archives,
)
from tests.fixtures.hostile_pickles import _system
from tests.fixtures.mutation import EDITS, mutate
from tests.scanners.test_archive import assert_reports_quickly

JOBLIB_SAMPLES = [f"joblib_{kind}" for kind in JOBLIB_COMPRESSORS]


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BenignSample]:
    samples = build_benign_archives(tmp_path_factory.mktemp("benign-joblib"), JOBLIB_SAMPLES)
    return {sample.name: sample for sample in samples}


def _compressed(value: object, kind: str, level: int = 3) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(value, buffer, compress=(kind, level))
    return buffer.getvalue()


def _scan(tmp_path: Path, data: bytes) -> FormatReport:
    path = tmp_path / "model.joblib"
    path.write_bytes(data)
    return scan_compressed_joblib(path)


def _kinds(report: FormatReport) -> dict[str, Severity]:
    return {f.key.split(":", 1)[0]: f.severity for f in report.issues}


def _imports(report: FormatReport) -> set[str]:
    return {i.qualified_name for p in report.pickles for i in p.scan.imports}


# ============================================================================================
# Sniffing


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"x\x9c", "zlib"),
        (b"x^", "zlib"),
        (b"\x1f\x8b\x08", "gzip"),
        (b"BZh9", "bz2"),
        (b"]\x00\x00\x80\x00", "lzma"),
        (b"\xfd7zXZ\x00\x00", "xz"),
        (b"\x04\x22\x4d\x18", "lz4"),
        (b"ZF0x1a               ", "compat"),
        (b"\x80\x04\x95", None),
        (b"(dp0\n", None),
        (b"PK\x03\x04", None),
        (b"", None),
        # joblib would route these to a decompressor that rejects them at once
        (b"x0,x1,y\n0.1,0.2,1\n", None),
        (b"BZip it", None),
        (b"\x1f\x8b\x07", None),
        (b"ZF this is not hex at all", None),
    ],
)
def test_sniff_compression(head: bytes, expected: str | None) -> None:
    assert sniff_compression(head) == expected


@pytest.mark.parametrize("kind", JOBLIB_COMPRESSORS)
def test_sniff_agrees_with_joblib(kind: str) -> None:
    data = _compressed({"a": 1}, kind)
    assert sniff_compression(data[:32]) == _detect_compressor(io.BytesIO(data)) == kind


def test_cap_formula() -> None:
    assert decompression_cap(0) == 1024**2
    assert decompression_cap(1000) == int(MAX_COMPRESSION_RATIO * 1000) + 1024**2
    assert decompression_cap(10**15) == MAX_DECOMPRESSED_BYTES


# ============================================================================================
# Benign


@pytest.mark.parametrize("name", JOBLIB_SAMPLES)
def test_compressed_sklearn_model_is_clean(name: str, benign: dict[str, BenignSample]) -> None:
    report = scan_compressed_joblib(benign[name].path)
    assert report.issues == ()
    assert report.format_detail == f"joblib-{name.removeprefix('joblib_')}"
    [embedded] = report.pickles
    assert embedded.member is None  # the decompressed stream is the file's own pickle
    assert embedded.scan.problems == ()
    assert embedded.scan.is_joblib
    assert embedded.scan.joblib_arrays > 0
    for found in embedded.scan.imports:
        assert classify(found.module, found.name).verdict is not Verdict.DANGEROUS


# ============================================================================================
# Hostile and broken


def test_bomb_is_not_scanned(tmp_path: Path) -> None:
    report = _scan(tmp_path, _compressed(np.zeros(2 * 1024**2), "zlib", 9))
    [bomb] = report.issues
    assert bomb.rule_id == "MLA103"
    assert bomb.key == "decompression-bomb:decompressed"
    assert bomb.severity is Severity.CRITICAL
    assert report.pickles == ()
    assert list(tmp_path.iterdir()) == [tmp_path / "model.joblib"]  # nothing left behind


@pytest.mark.parametrize("kind", JOBLIB_COMPRESSORS)
def test_truncated_stream_is_reported_and_partially_scanned(tmp_path: Path, kind: str) -> None:
    data = _compressed({"hook": _system(tmp_path / "c"), "pad": list(range(2000))}, kind)
    report = _scan(tmp_path, data[: len(data) * 3 // 4])
    kinds = _kinds(report)
    assert kinds.get("corrupt-stream") is Severity.HIGH or "malformed-pickle" in kinds
    assert report.pickles  # what decompressed before the break was scanned


def test_payload_before_the_break_is_still_found(tmp_path: Path) -> None:
    payload = pickle.dumps([_system(tmp_path / "c"), "x" * 100_000], protocol=4)
    data = zlib.compress(payload)
    report = _scan(tmp_path, data[: len(data) // 2])
    assert "corrupt-stream" in _kinds(report)
    assert any(i.name == "system" for i in report.pickles[0].scan.imports)


def test_trailing_data_after_zlib_stream(tmp_path: Path) -> None:
    # joblib.load never returns on this file (its zlib reader loops on the leftover bytes)
    data = _compressed({"a": 1}, "zlib") + b"\x80\x04 hidden"
    report = _scan(tmp_path, data)
    assert _kinds(report) == {"trailing-data": Severity.MEDIUM}


def test_zf_declared_length_mismatch(tmp_path: Path) -> None:
    payload = pickle.dumps({"a": 1}, protocol=2)
    data = b"ZF" + hex(len(payload) + 7).encode().ljust(19) + zlib.compress(payload)
    report = _scan(tmp_path, data)
    assert _kinds(report) == {"size-mismatch": Severity.HIGH}
    assert report.format_detail == "joblib-compat"


def test_zf_bad_length_field(tmp_path: Path) -> None:
    report = _scan(tmp_path, b"ZFnot-hex-at-all!!!!" + zlib.compress(b"N."))
    assert _kinds(report) == {"not-compressed": Severity.HIGH}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    prefix=st.sampled_from([b"ZF", b"\x78", b"\x1f\x8b", b"BZ"]),
    rest=st.binary(min_size=0, max_size=40),
)
def test_what_sniffing_rejects_joblib_cannot_decompress(prefix: bytes, rest: bytes) -> None:
    """Where sniff_compression is stricter than joblib, joblib's own reader fails before it
    yields a single byte to the unpickler: the stricter sniff hides nothing that would run."""
    from joblib.compressor import _COMPRESSORS
    from joblib.numpy_pickle_compat import read_zfile

    head = prefix + rest
    kind = _detect_compressor(io.BytesIO(head))
    if sniff_compression(head) is not None or kind == "not-compressed":
        return
    try:
        if kind == "compat":
            produced = read_zfile(io.BytesIO(head))
        else:
            with _COMPRESSORS[kind].decompressor_file(io.BytesIO(head)) as reader:
                produced = reader.read(1)
    except Exception:  # any failure before output is the point
        return
    assert produced == b"", (head, kind)


def test_companion_file_wrappers(tmp_path: Path) -> None:
    # An old-style pickle that makes joblib np.load a file named inside it.
    body = (
        b"\x80\x02cjoblib.numpy_pickle_compat\nNDArrayWrapper\n)\x81}("
        b"X\x08\x00\x00\x00filenameX\x0b\x00\x00\x00../evil.npyX\x08\x00\x00\x00subclass"
        b"cnumpy\nndarray\nub."
    )
    report = _scan(tmp_path, zlib.compress(body))
    assert _kinds(report)["companion-files"] is Severity.HIGH


@pytest.mark.skipif(importlib.util.find_spec("lz4") is not None, reason="lz4 installed")
def test_lz4_without_lz4_is_unscannable(tmp_path: Path) -> None:
    report = _scan(tmp_path, b"\x04\x22\x4d\x18" + bytes(32))
    [found] = report.issues
    assert found.rule_id == "MLA101"
    assert found.severity is Severity.HIGH


def test_not_compressed(tmp_path: Path) -> None:
    report = _scan(tmp_path, pickle.dumps({"a": 1}, protocol=4))
    assert _kinds(report) == {"not-compressed": Severity.HIGH}


# ============================================================================================
# Properties


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    value = {"coef": np.linspace(0, 1, 32), "names": ["a", "b"], "obj": np.array([1, None])}
    seeds = {kind: _compressed(value, kind) for kind in JOBLIB_COMPRESSORS}
    payload = pickle.dumps(value, protocol=2)
    seeds["compat"] = b"ZF" + hex(len(payload)).encode().ljust(19) + zlib.compress(payload)
    return seeds


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from([*JOBLIB_COMPRESSORS, "compat"]), edits=EDITS)
def test_mutated_compressed_files_always_report(
    seeds: dict[str, bytes], kind: str, edits: list[tuple[str, int, bytes]]
) -> None:
    assert_reports_quickly(scan_compressed_joblib, mutate(seeds[kind], edits))
