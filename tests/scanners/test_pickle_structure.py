"""The pickle walker as a sound over-approximation of the real loaders (issue 13).

* structural anomalies no pickler writes: each one is reported (MLA107 in the inventory), the
  fatal ones where the real loaders stop, with what ran before;
* joblib fails closed: only joblib's own wrapper construction, in its own frame layout, is
  followed; real joblib files of every protocol, compressed or not, stay clean;
* numpy dtype states that numpy would accept inconsistently are refused, benign structured
  dtypes (HistGradientBoosting's predictor records) are not;
* the inventory and the CLI: a stream that breaks after a payload is a report and exit 1.
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from mlaudit.core.findings import Severity
from mlaudit.loaders.load_gate import LoadStatus, decide
from mlaudit.scanners.compressed import scan_compressed_joblib
from mlaudit.scanners.inventory import report_for_member
from mlaudit.scanners.pickle import (
    MAX_EXPANDED,
    MalformedPickle,
    scan_bytes,
)
from mlaudit.scanners.pickle_policy import Verdict, classify
from mlaudit.subject.build import open_model
from tests.conftest import Runner
from tests.fixtures.hostile_pickles import (
    build_hostile_corpus,
    dtype_ops,
    dtype_state_ops,
    frombuffer_ops,
    global_op,
    unicode_op,
)

# ============================================================================================
# Structural anomalies


def _frame(body: bytes, length: int | None = None) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body) if length is None else length) + body


_ANOMALIES: dict[str, bytes] = {
    # SHORT_BINUNICODE 'abc' is 5 bytes; the frame holds 2 of them
    "frame-straddle": b"\x80\x04" + _frame(b"\x8c\x03abc", 2) + b".",
    "frame-past-end": b"\x80\x04" + _frame(b"N.", 1000),
    # a second FRAME opcode lies wholly inside the first frame
    "frame-reopened": b"\x80\x04" + _frame(b"N" + _frame(b"0N."), 12),
    "late-proto": b"\x80\x02N\x80\x02.",
    "stack-leftover": b"\x80\x02NN.",
    "expansion": b"\x80\x02]2.",  # DUP
}

_FATAL: dict[str, bytes] = {
    "missing-mark": b"\x80\x02Nt.",
    "stack-underflow": b"\x80\x02\x85.",
    "unwritten-memo": b"\x80\x02h\x05.",
    # a dict used as its own key: unhashable, the loader raises TypeError
    "impossible-structure": b"\x80\x02}q\x00h\x00K\x01s.",
    "malformed": b"\x80\x02N\xff",
}


@pytest.mark.parametrize("kind", list(_ANOMALIES))
def test_structural_anomaly_is_reported_and_the_walk_goes_on(kind: str) -> None:
    scan = scan_bytes(_ANOMALIES[kind])
    [problem] = [p for p in scan.problems if p.kind == kind]
    assert problem.structural
    assert scan.pickles == 1


@pytest.mark.parametrize("kind", list(_FATAL))
def test_fatal_anomaly_stops_the_walk_where_the_loader_stops(kind: str) -> None:
    with pytest.raises(MalformedPickle) as caught:
        scan_bytes(_FATAL[kind])
    partial = caught.value.partial
    assert partial is not None
    assert [p.kind for p in partial.problems] == [kind]
    assert partial.problems[0].structural
    assert partial.problems[0].offset == caught.value.offset >= 2


def test_imports_before_a_break_are_in_the_partial_scan() -> None:
    data = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85Rh\x63."
    with pytest.raises(MalformedPickle) as caught:
        scan_bytes(data)
    partial = caught.value.partial
    assert partial is not None
    assert [i.qualified_name for i in partial.imports] == ["os.system"]
    assert {p.kind for p in partial.problems} == {"unwritten-memo"}


@pytest.mark.parametrize(
    "data", [b"", b"\x00" * 8, b"\xff\x80", b"\x01cos\nsystem\n"],
    ids=["empty", "zeros", "invalid", "control-byte"],
)
def test_only_data_whose_first_byte_is_no_opcode_is_not_a_pickle(data: bytes) -> None:
    with pytest.raises(MalformedPickle) as caught:
        scan_bytes(data)
    assert caught.value.partial is None


@pytest.mark.parametrize("data", [b"\x80", b"c", b"\x8c\x05ab"], ids=["proto", "global", "text"])
def test_a_first_opcode_cut_short_is_a_broken_pickle(data: bytes) -> None:
    with pytest.raises(MalformedPickle) as caught:
        scan_bytes(data)
    assert caught.value.partial is not None
    assert [p.kind for p in caught.value.partial.problems] == ["malformed"]


def test_global_names_are_decoded_as_the_unpickler_decodes_them() -> None:
    # UTF-8, no string escapes: genops would stop at the first name and unescape the second
    scan = scan_bytes("cos\nsyst\u00e8me\n0cos\nsys\\x74em\n0N.".encode())
    assert [i.name for i in scan.imports] == ["syst\u00e8me", "sys\\x74em"]


def test_memo_expansion_bomb_is_an_anomaly() -> None:
    # level k = [level k-1, level k-1], each memoised: linear in bytes, 2**40 when expanded
    levels = 40
    body = b"]q\x00"
    for level in range(1, levels):
        body += b"]q" + bytes([level]) + b"(h" + bytes([level - 1]) + b"h" + bytes([level - 1])
        body += b"e0"
    scan = scan_bytes(b"\x80\x02" + body + b"h" + bytes([levels - 1]) + b".")
    assert 2**levels > MAX_EXPANDED
    assert "expansion" in {p.kind for p in scan.problems}


def test_shared_references_of_real_data_are_no_expansion() -> None:
    shared = {"name": "x" * 10, "values": list(range(50))}
    data = pickle.dumps([shared] * 20_000 + [[shared, shared]] * 100, protocol=4)
    assert scan_bytes(data).problems == ()


# ============================================================================================
# joblib fails closed

_WRAPPER = global_op("joblib.numpy_pickle", "NumpyArrayWrapper")


def _state(count: int = 1, code: str = "u1", extra: bytes = b"", flags: int = 0) -> bytes:
    """The items of a wrapper state dict (MARK ... SETITEMS) for ``count`` items of ``code``."""
    dtype = dtype_ops(code, dtype_state_ops(flags))
    return (
        b"(" + unicode_op("subclass") + global_op("numpy", "ndarray")
        + unicode_op("shape") + b"K" + bytes([count]) + b"\x85"
        + unicode_op("order") + unicode_op("C") + unicode_op("dtype") + dtype
        + unicode_op("allow_mmap") + b"\x89" + extra + b"u"
    )


def test_canonical_wrapper_is_followed() -> None:
    data = b"\x80\x04" + _WRAPPER + b")\x81}" + _state() + b"b" + b"\x07" + b"."
    scan = scan_bytes(data)
    assert scan.problems == ()
    assert scan.joblib_arrays == 1


_UNSCANNABLE: dict[str, bytes] = {
    # the wrapper instance read back from the memo and built a second time
    "memo-read-instance": (
        _WRAPPER + b")\x81q\x07}" + _state() + b"b\x00" + b"0h\x07}" + _state() + b"b\x00."
    ),
    # the state is a dict() call result filled by SETITEMS: not a literal dict
    "state-not-literal": (
        _WRAPPER + b")\x81" + global_op("builtins", "dict") + b")R" + _state() + b"b\x00."
    ),
    # an extra key would become an instance attribute that shadows a method joblib calls
    "unknown-key": (
        _WRAPPER + b")\x81}" + _state(extra=unicode_op("read") + b"N") + b"b\x00."
    ),
    "non-literal-alignment": (
        _WRAPPER + b")\x81}"
        + _state(extra=unicode_op("numpy_array_alignment_bytes") + global_op("builtins", "int")
                 + b")R")
        + b"b\x00."
    ),
    # protocol 0/1 construction with the arguments built by TUPLE3 instead of MARK..TUPLE
    "reconstructor-tuple3": (
        global_op("copyreg", "_reconstructor") + _WRAPPER + global_op("builtins", "object")
        + b"N\x87R}" + _state() + b"b\x00."
    ),
    "newobj-with-arguments": _WRAPPER + b"K\x01\x85\x81}" + _state() + b"b\x00.",
    # the state dict memoised, dropped, and read back from the memo for the BUILD
    "state-from-memo": _WRAPPER + b")\x81}q\x05" + _state() + b"0h\x05b\x00.",
    # an object array's nested pickle whose frame goes on after its STOP
    "nested-stop-inside-frame": (
        _WRAPPER + b")\x81}" + _state(code="O8", flags=63) + b"b"
        + b"\x80\x05" + _frame(b"N.NN") + b"0."
    ),
}


@pytest.mark.parametrize("case", list(_UNSCANNABLE))
def test_other_wrapper_constructions_are_unscannable(case: str) -> None:
    scan = scan_bytes(b"\x80\x04" + _UNSCANNABLE[case])
    assert "unscannable" in {p.kind for p in scan.problems}, scan.problems


def _joblib(value: object, protocol: int, compress: int = 0) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(value, buffer, protocol=protocol, compress=compress)
    return buffer.getvalue()


@cache
def _hist_gradient_boosting() -> Any:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    features, labels = make_classification(n_samples=200, n_features=6, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(features, labels)


def _big_and_mixed() -> dict[str, object]:
    return {
        "weights": np.linspace(0, 1, 300_000),  # past the protocol 4 frame target
        "objects": np.array(["a", None, 3], dtype=object),
        "records": np.zeros(4, dtype=[("o", "O"), ("f", "<f8")]),
        "model": _hist_gradient_boosting(),
    }


@pytest.mark.parametrize("protocol", range(6))
def test_real_joblib_files_of_every_protocol_are_clean(protocol: int) -> None:
    scan = scan_bytes(_joblib(_big_and_mixed(), protocol))
    assert scan.problems == ()
    assert scan.joblib_arrays >= 4


def test_names_pickle_load_meets_in_array_bytes_count_even_when_on_no_list() -> None:
    hidden = b"0" + global_op("no_such_module", "function") + b")R"
    data = b"\x80\x04" + _WRAPPER + b")\x81}" + _state(len(hidden)) + b"b" + hidden + b"."
    scan = scan_bytes(data)
    assert scan.problems == ()
    assert scan.joblib_arrays == 1  # joblib reads the bytes as an array; pickle.load runs them
    assert "no_such_module.function" in {i.qualified_name for i in scan.imports}


def test_names_assembled_from_the_memo_past_an_array_count_only_when_dangerous() -> None:
    # pickle.load's reading past joblib's first array: memo reads may be junk from another
    # pickle's memo, so an unknown name built from them does not count, a dangerous one does
    names = unicode_op("no_such_module") + b"q\x01" + unicode_op("os") + b"q\x02"
    names += unicode_op("function") + b"q\x03" + unicode_op("system") + b"q\x04" + b"0000"
    hidden = b"0h\x01h\x03\x93)R0h\x02h\x04\x93)R"
    data = (
        b"\x80\x04" + names + _WRAPPER + b")\x81}" + _state(len(hidden)) + b"b" + hidden + b"."
    )
    imports = {i.qualified_name for i in scan_bytes(data).imports}
    assert "os.system" in imports
    assert "no_such_module.function" not in imports


class _Unseekable(io.RawIOBase):
    """A stream joblib cannot ``tell()`` on: it writes arrays without alignment padding."""

    def __init__(self) -> None:
        self.written = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.written.write(data)

    def tell(self) -> int:
        raise io.UnsupportedOperation


@pytest.mark.parametrize("protocol", range(2, 6))
def test_unaligned_joblib_files_are_clean_and_allowlisted(protocol: int) -> None:
    # Without padding, pickle.load's reading runs on into the object array's nested pickle
    # with the outer memo: the junk names it assembles there must not count.
    stream = _Unseekable()
    joblib.dump({"first": np.array(["a", None], dtype=object), **_big_and_mixed()}, stream,
                protocol=protocol)
    scan = scan_bytes(stream.written.getvalue())
    assert scan.problems == ()
    assert {classify(i.module, i.name).verdict for i in scan.imports} == {Verdict.ALLOWED}


@pytest.mark.parametrize("protocol", range(2, 6))
def test_real_compressed_joblib_files_are_clean(protocol: int, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(_joblib(_big_and_mixed(), protocol, compress=3))
    report = scan_compressed_joblib(path)
    assert report.issues == ()
    [embedded] = report.pickles
    assert embedded.scan.problems == ()
    assert embedded.scan.joblib_arrays >= 4


# ============================================================================================
# numpy dtype states


def test_hist_gradient_boosting_predictor_records_are_checked_and_clean() -> None:
    model = _hist_gradient_boosting()
    for data in [
        *(pickle.dumps(model, protocol=p) for p in range(6)),
        *(_joblib(model, p) for p in range(2, 6)),
    ]:
        assert b"bitset_idx" in data  # the structured record dtype is in the file
        assert scan_bytes(data).problems == ()


def _benign_dtypes() -> list[np.dtype[Any]]:
    return [
        np.dtype([("a", "<i4"), ("b", "<f8")]),
        np.dtype([("a", "<i4"), ("b", "<f8")], align=True),
        np.dtype([("o", "O"), ("f", "<f8"), ("n", [("x", "O"), ("y", "u1")])]),
        np.dtype(("O", (2, 3))),
        np.dtype(("<f4", (4,))),
        np.dtype({"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [0, 0]}),
        np.dtype({"names": ["a"], "formats": ["O"], "titles": ["the a"]}),
        np.dtype("M8[ms]"), np.dtype("<U7"), np.dtype("S3"), np.dtype("V5"), np.dtype("O"),
    ]


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_benign_dtypes_and_their_arrays_are_clean(protocol: int) -> None:
    dtypes = _benign_dtypes()
    arrays = [np.zeros(3, dtype=dtype) for dtype in dtypes]
    assert scan_bytes(pickle.dumps((dtypes, arrays), protocol=protocol)).problems == ()


def _field(dtype: bytes, offset: int) -> bytes:
    return dtype + b"K" + bytes([offset]) + b"\x86"


def _fields(*entries: tuple[str, bytes, int]) -> bytes:
    """The names tuple and the fields dict of a dtype state."""
    names = b"(" + b"".join(unicode_op(n) for n, _, _ in entries) + b"t"
    fields = b"}(" + b"".join(unicode_op(n) + _field(d, o) for n, d, o in entries) + b"u"
    return names + fields


_OBJECT = dtype_ops("O8", dtype_state_ops(63))
_FLOAT = dtype_ops("f8", dtype_state_ops(0))

_UNSAFE_DTYPES: dict[str, bytes] = {
    "object-flags-cleared": dtype_ops("O8", dtype_state_ops(0)),
    "object-field-flags-deny": dtype_ops(
        "V8", dtype_state_ops(16, _fields(("a", _OBJECT, 0)), elsize=8)
    ),
    "object-field-overlaps": dtype_ops(
        "V16", dtype_state_ops(27, _fields(("a", _OBJECT, 0), ("b", _FLOAT, 4)), elsize=16)
    ),
    "object-field-out-of-item": dtype_ops(
        "V8", dtype_state_ops(27, _fields(("a", _OBJECT, 4)), elsize=8)
    ),
    "flags-claim-objects": dtype_ops(
        "V8", dtype_state_ops(27, _fields(("a", _FLOAT, 0)), elsize=8)
    ),
    "object-subarray-flags-deny": dtype_ops(
        "V16", dtype_state_ops(16, elsize=16, subarray=_OBJECT + b"K\x02\x85\x86")
    ),
    "fields-on-float": dtype_ops("f8", dtype_state_ops(0, _fields(("a", _OBJECT, 0)))),
    "state-set-twice": dtype_ops("O8", dtype_state_ops(63)) + dtype_state_ops(63) + b"b",
    "dtype-class-in-partial": (
        global_op("functools", "partial") + global_op("numpy", "dtype") + unicode_op("O8")
        + b"\x86R)R" + dtype_state_ops(0) + b"b"
    ),
    "frombuffer-object-dtype": frombuffer_ops(_OBJECT),
    "reconstruct-object-from-bytes": (
        global_op("numpy._core.multiarray", "_reconstruct") + global_op("numpy", "ndarray")
        + b"K\x00\x85C\x01b\x87R" + b"(K\x01K\x01\x85" + _OBJECT + b"\x89C\x08AAAAAAAAtb"
    ),
}


def test_consistent_hand_written_dtype_state_is_clean() -> None:
    fields = _fields(("a", _OBJECT, 0), ("b", _FLOAT, 8))
    consistent = dtype_ops("V16", dtype_state_ops(27, fields, elsize=16))
    assert scan_bytes(b"\x80\x04" + consistent + b".").problems == ()


@pytest.mark.parametrize("case", list(_UNSAFE_DTYPES))
def test_inconsistent_dtype_state_is_unsafe(case: str) -> None:
    scan = scan_bytes(b"\x80\x04" + _UNSAFE_DTYPES[case] + b".")
    assert "unsafe-dtype" in {p.kind for p in scan.problems}, scan.problems


# ============================================================================================
# Inventory, gate and CLI


def _sample(tmp_path: Path, name: str) -> Path:
    [sample] = build_hostile_corpus(tmp_path / "corpus", tmp_path / "canary", [name])
    return sample.path


@pytest.mark.parametrize("name", ["malformed_after_reduce", "unwritten_memo_after_reduce"])
def test_payload_before_a_break_is_inventoried_and_blocked(tmp_path: Path, name: str) -> None:
    artifact = open_model(str(_sample(tmp_path, name)))
    inventory = artifact.inventory
    assert [n.qualified_name for n in inventory.with_verdict(Verdict.DANGEROUS)] == ["os.system"]
    [anomaly] = inventory.issues_for("MLA107")
    assert anomaly.severity is Severity.HIGH
    assert anomaly.key.startswith("pickle-")
    assert anomaly.pointer is not None
    assert anomaly.pointer.startswith("offset ")
    assert decide(artifact, [], trust_model=False).status is LoadStatus.BLOCKED
    assert not (tmp_path / "canary").exists()


def test_folder_member_that_breaks_is_scanned_up_to_the_break(tmp_path: Path) -> None:
    report = report_for_member(_sample(tmp_path, "malformed_after_reduce"))
    assert report is not None
    [embedded] = report.pickles
    assert "os.system" in {i.qualified_name for i in embedded.scan.imports}
    assert {p.kind for p in embedded.scan.problems} == {"malformed"}


def test_cli_writes_a_report_and_exits_1_for_a_payload_before_a_break(
    run_cli: Runner, tmp_path: Path
) -> None:
    result = run_cli("scan", _sample(tmp_path, "malformed_after_reduce"), "--select", "MLA1")
    assert result.exit_code == 1, result.stderr
    assert any(f["severity"] == "critical" for f in result.result("MLA101")["findings"])
    [anomaly] = result.result("MLA107")["findings"]
    assert anomaly["severity"] == "high"
    assert anomaly["location"]["pointer"].startswith("offset ")
    assert not (tmp_path / "canary").exists()



# Found by the differential test (2026-12-04): a joblib array's padding byte that points past
# the end of the file made the memory-mapped walk raise ValueError instead of a finding.
JOBLIB_PADDING_PAST_THE_END = (
    b'\x80\x04\x95\xd4\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x13joblib.numpy_pickle\x94\x8c\x11NumpyArrayWrapper\x94\x93\x94)\x81\x94}\x94(\x8c\x08subclass\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94\x8c\x05shape\x94K\x02\x85\x94\x8c\x05order\x94\x8c\x01C\x94\x8c\x05dtype\x94h\x07\x8c\x05dtype\x94\x93\x94\x8c\x02O8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?t\x94b\x8c\nallow_mmap\x94\x89\x8c\x1bnumpy_array_alignment_bytes\x94K\x10ub\x80\x05\x95\x90\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x02\x85\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02O8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?t\x94b\x89]\x94(K\x01\x8c\x01x\x94et\x94b.\x95E\x00\x00\x00\x00\x00\x00\x00h\x03)\x81\x94}\x94(h\x06h\th\nK\x02\x85\x94h\x0ch\rh\x0eh\x10\x8c\x02b1\x94\x89\x88\x87\x94R\x94(K\x03h\x14NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bh\x16\x88h\x17K\x10ub\x07'
)


def test_joblib_padding_past_the_end_is_a_broken_pickle_not_a_crash(tmp_path: Path) -> None:
    from mlaudit.subject.build import open_model

    path = tmp_path / "padding.joblib"
    path.write_bytes(JOBLIB_PADDING_PAST_THE_END)
    issues = open_model(str(path)).inventory.issues
    assert [(i.rule_id, i.severity) for i in issues] == [("MLA107", Severity.HIGH)]
    assert "padding runs past the end" in issues[0].message
