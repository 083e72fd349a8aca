"""Tests of the safetensors layout check (mlaudit.scanners.safetensors_format).

* a hostile corpus (tests/fixtures/hostile_formats.py): every trick is reported, by tensor;
* files written by the safetensors library from torch and numpy tensors: no issue;
* every rule on its own, every trick in one file at once, and the sniff helper;
* hypothesis: random and mutated files never raise, and whatever the safetensors library
  rejects is reported HIGH (differential test against the library's own parser).
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import pytest
import safetensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaudit.core.findings import Severity
from mlaudit.scanners import safetensors_format
from mlaudit.scanners.format_report import MAX_JSON_HEADER_BYTES, FormatReport
from mlaudit.scanners.safetensors_format import looks_like_safetensors, scan_safetensors
from tests.fixtures.benign_formats import BenignFormatSample, build_benign_formats
from tests.fixtures.hostile_formats import (
    HOSTILE_FORMAT_NAMES,
    HostileFormatSample,
    build_hostile_formats,
    safetensors_bytes,
)
from tests.fixtures.mutation import EDITS, mutate

HOSTILE = [name for name in HOSTILE_FORMAT_NAMES if name.startswith("safetensors")]
BENIGN = ["safetensors_torch", "safetensors_numpy"]


def _scan_blob(path: Path, blob: bytes) -> FormatReport:
    path.write_bytes(blob)
    return scan_safetensors(path)


def _keys(report: FormatReport) -> set[str]:
    return {issue.key for issue in report.issues}


def _high(report: FormatReport) -> list[str]:
    return [issue.key for issue in report.issues if issue.severity >= Severity.HIGH]


def _entry(dtype: object, shape: object, begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# ============================================================================================
# Hostile corpus


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, HostileFormatSample]:
    directory = tmp_path_factory.mktemp("hostile-safetensors")
    samples = build_hostile_formats(directory, directory / "canary", HOSTILE)
    return {sample.name: sample for sample in samples}


def test_corpus_shape(hostile: dict[str, HostileFormatSample]) -> None:
    assert len(hostile) >= 6
    for sample in hostile.values():
        assert sample.scanner == "safetensors"
        assert sample.path.is_file()
        assert sample.rule_id == "MLA107"


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_sample_is_flagged(name: str, hostile: dict[str, HostileFormatSample]) -> None:
    sample = hostile[name]
    report = scan_safetensors(sample.path)
    matches = [issue for issue in report.issues if issue.key.startswith(sample.key_prefix)]
    assert matches, f"{name}: no {sample.key_prefix}; issues were {_keys(report)}"
    for issue in matches:
        assert issue.rule_id == "MLA107"
        assert issue.severity >= sample.min_severity
    assert report.format_detail.startswith("safetensors")


def test_issue_keys_are_stable_names_not_offsets(hostile: dict[str, HostileFormatSample],
                                                 tmp_path: Path) -> None:
    # The same trick at other offsets gives the same key.
    first = scan_safetensors(hostile["safetensors_overlap"].path)
    moved = {"weight": _entry("F32", [4], 8, 24), "bias": _entry("F32", [4], 16, 32)}
    second = _scan_blob(tmp_path / "moved.safetensors", safetensors_bytes(moved, bytes(32)))
    assert "safetensors-overlap:bias/weight" in _keys(first) & _keys(second)
    [overlap] = [i for i in first.issues if i.key == "safetensors-overlap:bias/weight"]
    assert overlap.pointer == "tensors 'bias' and 'weight'"
    assert overlap.evidence["shared_bytes"] == 8


def test_library_accepts_duplicate_names_silently(
    hostile: dict[str, HostileFormatSample],
) -> None:
    """Why the check is our own: the library keeps one 'weight' and says nothing."""
    data = hostile["safetensors_duplicate_names"].path.read_bytes()
    [(name, tensor)] = safetensors.deserialize(data)
    assert name == "weight"
    assert tensor["shape"] == [8]  # the last entry won; the first one vanished unnoticed
    report = scan_safetensors(hostile["safetensors_duplicate_names"].path)
    assert _keys(report) == {"safetensors-duplicate-tensor:weight"}


@pytest.mark.parametrize("name", ["safetensors_overlap", "safetensors_trailing_payload",
                                  "safetensors_gap_payload", "safetensors_header_past_end"])
def test_library_rejects_layout_tricks(name: str,
                                       hostile: dict[str, HostileFormatSample]) -> None:
    with pytest.raises(safetensors.SafetensorError):
        safetensors.deserialize(hostile[name].path.read_bytes())


# ============================================================================================
# Benign files


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> list[BenignFormatSample]:
    return build_benign_formats(tmp_path_factory.mktemp("benign-safetensors"), BENIGN)


def test_benign_files_have_no_issues(benign: list[BenignFormatSample]) -> None:
    assert len(benign) == 2
    for sample in benign:
        report = scan_safetensors(sample.path)
        assert report.issues == (), (sample.name, report.issues)
        loaded = safetensors.deserialize(sample.path.read_bytes())
        assert str(len(loaded)) in report.format_detail


def test_benign_files_are_sniffed(benign: list[BenignFormatSample]) -> None:
    for sample in benign:
        data = sample.path.read_bytes()
        assert looks_like_safetensors(data[:64], len(data))


# ============================================================================================
# Rules one by one

_TRICKS: list[tuple[str, str | dict[str, Any], int, str, Severity]] = [
    ("bad dtype", {"w": _entry("F33", [1], 0, 4)}, 4, "safetensors-bad-dtype:w", Severity.HIGH),
    ("dtype not a string", {"w": _entry(7, [1], 0, 4)}, 4, "safetensors-bad-dtype:w",
     Severity.HIGH),
    ("negative dim", {"w": _entry("U8", [-1], 0, 0)}, 0, "safetensors-bad-shape:w",
     Severity.HIGH),
    ("bool dim", {"w": _entry("U8", [True], 0, 1)}, 1, "safetensors-bad-shape:w", Severity.HIGH),
    ("float dim", {"w": _entry("U8", [1.0], 0, 1)}, 1, "safetensors-bad-shape:w", Severity.HIGH),
    ("shape not a list", {"w": _entry("U8", 3, 0, 3)}, 3, "safetensors-bad-shape:w",
     Severity.HIGH),
    ("three offsets", {"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}}, 1,
     "safetensors-bad-offsets:w", Severity.HIGH),
    ("reversed offsets", {"w": _entry("U8", [0], 4, 0)}, 4, "safetensors-reversed-offsets:w",
     Severity.HIGH),
    ("past end", {"w": _entry("U8", [8], 0, 8)}, 4, "safetensors-offsets-past-end:w",
     Severity.HIGH),
    ("size mismatch", {"w": _entry("F32", [2], 0, 4)}, 4, "safetensors-size-mismatch:w",
     Severity.HIGH),
    ("partial byte", {"w": _entry("F4", [3], 0, 2)}, 2, "safetensors-partial-byte:w",
     Severity.HIGH),
    ("missing field", {"w": {"dtype": "U8", "data_offsets": [0, 1]}}, 1,
     "safetensors-missing-field:w", Severity.HIGH),
    ("entry not object", {"w": [1, 2]}, 0, "safetensors-entry-not-object:w", Severity.HIGH),
    ("unknown field", {"w": {**_entry("U8", [1], 0, 1), "payload": "x"}}, 1,
     "safetensors-unknown-field:w", Severity.MEDIUM),
    ("metadata not object", {"__metadata__": ["a"], "w": _entry("U8", [1], 0, 1)}, 1,
     "safetensors-metadata-not-object:__metadata__", Severity.HIGH),
    ("metadata null value", {"__metadata__": {"k": None}, "w": _entry("U8", [1], 0, 1)}, 1,
     "safetensors-metadata-not-string:__metadata__.k", Severity.HIGH),
    ("empty inside another", {"w": _entry("U8", [4], 0, 4), "e": _entry("U8", [0], 2, 2)}, 4,
     "safetensors-empty-inside:e", Severity.HIGH),
    ("duplicate field", '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"dtype":"U8"}}',
     1, "safetensors-duplicate-field:w.dtype", Severity.HIGH),
    ("leading whitespace", ' {"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1,
     "safetensors-header-leading-space", Severity.MEDIUM),
    ("NaN", '{"w":{"dtype":"U8","shape":[NaN],"data_offsets":[0,1]}}', 1,
     "safetensors-header-not-json", Severity.HIGH),
    ("not an object", "[1, 2]", 0, "safetensors-header-not-object", Severity.HIGH),
    ("trailing garbage", '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}\x00', 1,
     "safetensors-header-not-json", Severity.HIGH),
]


@pytest.mark.parametrize(("header", "data_size", "key", "severity"),
                         [trick[1:] for trick in _TRICKS], ids=[trick[0] for trick in _TRICKS])
def test_each_rule(tmp_path: Path, header: str | dict[str, Any], data_size: int, key: str,
                   severity: Severity) -> None:
    report = _scan_blob(tmp_path / "t.safetensors", safetensors_bytes(header, bytes(data_size)))
    matches = [issue for issue in report.issues if issue.key == key]
    assert matches, _keys(report)
    assert matches[0].severity is severity
    assert matches[0].rule_id == "MLA107"


def test_boundary_cases_are_clean(tmp_path: Path) -> None:
    header = {
        "__metadata__": {"format": "pt"},
        "a": _entry("F32", [2, 2], 0, 16),
        "empty_between": _entry("F32", [0, 3], 16, 16),
        "empty_at_end": _entry("U8", [0], 20, 20),
        "scalar": _entry("I32", [], 16, 20),
        "nibbles": _entry("F4", [4], 20, 22),
        "complex": _entry("C64", [1], 22, 30),
    }
    report = _scan_blob(tmp_path / "ok.safetensors", safetensors_bytes(header, bytes(30)))
    assert report.issues == ()
    safetensors.deserialize((tmp_path / "ok.safetensors").read_bytes())


def test_every_trick_in_one_file_is_reported(tmp_path: Path) -> None:
    header = (
        '{"__metadata__":{"n":1},'
        '"dup":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
        '"dup":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
        '"over":{"dtype":"U8","shape":[4],"data_offsets":[2,6]},'
        '"wrong":{"dtype":"F32","shape":[3],"data_offsets":[6,10]},'
        '"odd":{"dtype":"Q8","shape":[1],"data_offsets":[20,21]},'
        '"far":{"dtype":"U8","shape":[1],"data_offsets":[999,1000]}}'
    )
    report = _scan_blob(tmp_path / "all.safetensors", safetensors_bytes(header, bytes(40)))
    assert {
        "safetensors-metadata-not-string:__metadata__.n", "safetensors-duplicate-tensor:dup",
        "safetensors-overlap:dup/over", "safetensors-size-mismatch:wrong",
        "safetensors-bad-dtype:odd", "safetensors-gap:odd", "safetensors-offsets-past-end:far",
        "safetensors-trailing-bytes:odd",
    } <= _keys(report)


@pytest.mark.parametrize(("blob", "key"), [
    (b"", "safetensors-file-too-short"),
    (b"\x01\x00\x00", "safetensors-file-too-short"),
    (struct.pack("<Q", MAX_JSON_HEADER_BYTES + 1), "safetensors-header-too-large"),
    (struct.pack("<Q", 9) + b"{}", "safetensors-header-past-end"),
    (struct.pack("<Q", 2) + b"\xff\xfe", "safetensors-header-not-utf8"),
], ids=["empty", "short", "over-cap", "past-end", "not-utf8"])
def test_broken_framing(tmp_path: Path, blob: bytes, key: str) -> None:
    report = _scan_blob(tmp_path / "f.safetensors", blob)
    assert [issue.key for issue in report.issues] == [key]
    assert report.issues[0].severity is Severity.HIGH


def test_issue_count_is_capped(tmp_path: Path) -> None:
    header = {f"t{i}": _entry("F32", [1], 0, 3) for i in range(500)}
    report = _scan_blob(tmp_path / "many.safetensors", safetensors_bytes(header, bytes(3)))
    assert len(report.issues) == safetensors_format.MAX_ISSUES + 1
    assert report.issues[-1].key == "mla107:more-issues"
    assert report.issues[-1].severity is Severity.HIGH


def test_huge_shapes_do_not_build_huge_numbers(tmp_path: Path) -> None:
    header = {"w": _entry("F64", [2**62] * 2000, 0, 8)}
    start = time.perf_counter()
    report = _scan_blob(tmp_path / "huge.safetensors", safetensors_bytes(header, bytes(8)))
    assert time.perf_counter() - start < 1.0
    assert "safetensors-size-mismatch:w" in _keys(report)


def test_data_region_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A 64 MiB data region scans as fast as an empty one: only the header is read.
    path = tmp_path / "big.safetensors"
    header = safetensors_bytes({"w": _entry("U8", [64 * 2**20], 0, 64 * 2**20)}, b"")
    with path.open("wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + 64 * 2**20)
    start = time.perf_counter()
    assert scan_safetensors(path).issues == ()
    assert time.perf_counter() - start < 0.5


# ============================================================================================
# Sniffing


@pytest.mark.parametrize(("head", "size", "expected"), [
    (struct.pack("<Q", 2) + b"{}", 10, True),
    (struct.pack("<Q", 2) + b"{}", 9, False),  # header longer than what follows
    (struct.pack("<Q", 2) + b" {", 10, False),
    (struct.pack("<Q", 1) + b"{", 9, False),
    (struct.pack("<Q", MAX_JSON_HEADER_BYTES + 1) + b"{", 2**31, False),
    (b"\x80\x04\x95" + bytes(10), 100, False),  # a pickle
    (b"PK\x03\x04" + bytes(10), 100, False),  # a zip
    (b"\x89HDF\r\n\x1a\n{", 100, False),
    (b"{}", 2, False),
])
def test_sniff(head: bytes, size: int, expected: bool) -> None:
    assert looks_like_safetensors(head, size) is expected


# ============================================================================================
# Properties


def _scan_never_raises(path: Path, blob: bytes) -> FormatReport:
    start = time.perf_counter()
    report = _scan_blob(path, blob)
    assert time.perf_counter() - start < 2.0
    assert isinstance(report, FormatReport)
    for issue in report.issues:
        assert issue.rule_id == "MLA107"
        assert issue.key.startswith("safetensors-")
    return report


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("safetensors-fuzz") / "fuzz.safetensors"


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=300))
def test_random_bytes(scratch: Path, blob: bytes) -> None:
    _scan_never_raises(scratch, blob)


@pytest.fixture(scope="module")
def seeds(benign: list[BenignFormatSample]) -> list[bytes]:
    return [sample.path.read_bytes() for sample in benign]


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1), edits=EDITS)
def test_mutated_benign_files(scratch: Path, seeds: list[bytes],
                              seed: int, edits: list[tuple[str, int, bytes]]) -> None:
    data = mutate(seeds[seed], edits)
    report = _scan_never_raises(scratch, data)
    try:
        safetensors.deserialize(bytes(data))
    except Exception:  # the library refused the file: the scan must have said why
        assert _high(report), report.issues


_names = st.text(st.characters(blacklist_categories=["Cs"]), max_size=6)
_small = st.integers(0, 24)
_dtypes = st.sampled_from([*safetensors_format.DTYPE_BITS, "F32", "U8", "X9"])
_entries = st.fixed_dictionaries(
    {"dtype": _dtypes, "shape": st.lists(st.integers(0, 4), max_size=3),
     "data_offsets": st.tuples(_small, _small).map(list)},
    optional={"extra": st.just(1)},
)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.dictionaries(_names, _entries, max_size=5), data_size=_small,
       metadata=st.none() | st.dictionaries(_names, _names | st.integers(), max_size=2))
def test_library_rejections_are_reported(
    scratch: Path, entries: dict[str, Any], data_size: int, metadata: dict[str, Any] | None,
) -> None:
    """Differential: whatever the safetensors library refuses, the scan reports HIGH."""
    header: dict[str, Any] = dict(entries)
    if metadata is not None:
        header["__metadata__"] = metadata
    blob = safetensors_bytes(header, bytes(data_size))
    report = _scan_never_raises(scratch, blob)
    try:
        safetensors.deserialize(blob)
    except Exception:
        assert _high(report), (header, data_size, report.issues)
    else:
        # The library accepts it: every issue is one the library tolerates by design.
        tolerated = ("safetensors-unknown-field:",)
        assert all(key.startswith(tolerated) for key in _keys(report)), report.issues


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.lists(st.tuples(st.sampled_from(sorted(safetensors_format.DTYPE_BITS)),
                                 st.lists(st.integers(0, 5), max_size=3)), max_size=6))
def test_contiguous_layouts_are_clean(scratch: Path, layout: list[tuple[str, list[int]]]) -> None:
    header: dict[str, Any] = {}
    offset = 0
    for index, (dtype, shape) in enumerate(layout):
        elements = 1
        for dimension in shape:
            elements *= dimension
        bits = elements * safetensors_format.DTYPE_BITS[dtype]
        if bits % 8:  # sub-byte dtypes: four times as many elements fill whole bytes
            shape, bits = [*shape, 4], bits * 4
        size = bits // 8
        header[f"t{index}"] = _entry(dtype, shape, offset, offset + size)
        offset += size
    blob = safetensors_bytes(header, bytes(offset))
    assert _scan_never_raises(scratch, blob).issues == ()
    safetensors.deserialize(blob)

