"""Tests of the PyTorch scanners (mlaudit.scanners.torch).

Real checkpoints written by torch (state dicts, full modules, optimizer checkpoints, the legacy
format, TorchScript) scan clean; payloads in every pickle torch.load reads are found; bytes
torch.load never unpickles (raw storages, anything after the legacy stream's fifth pickle)
are not flagged; mutated checkpoints always give a report. torch is imported once, by the
module fixture.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaudit.core.findings import Severity
from mlaudit.scanners.format_report import FormatReport
from mlaudit.scanners.inventory import FORMAT_SCANNERS
from mlaudit.scanners.pickle_policy import Verdict, classify
from mlaudit.scanners.sniff import ModelFormat
from tests.fixtures.benign_archives import BENIGN_SAMPLE_NAMES, BenignSample, build_benign_archives
from tests.fixtures.hostile_pickles import _system
from tests.fixtures.mutation import EDITS, mutate
from tests.scanners.test_archive import assert_reports_quickly

SYSTEM = f"{os.system.__module__}.system"
# The scanners as the inventory runs them: other members scanned by content.
scan_torch_zip = FORMAT_SCANNERS[ModelFormat.PYTORCH]
scan_torch_legacy = FORMAT_SCANNERS[ModelFormat.PYTORCH_LEGACY]
TORCH_SAMPLES = [n for n in BENIGN_SAMPLE_NAMES if n.startswith("torch")]

# Every global the benign torch files import (the allowlist is generated from lists like this).
EXPECTED_TORCH_GLOBALS = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.FloatStorage",
    "torch.LongStorage",
    "__builtin__.set",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.conv.Conv1d",
    "torch.nn.modules.batchnorm.BatchNorm1d",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.flatten.Flatten",
    "torch.nn.modules.linear.Linear",
    "torch.nn.modules.dropout.Dropout",
    "torch.jit._pickle.build_intlist",
    "torch.jit._pickle.restore_type_tag",
    "torch.FloatTensor",
}


@pytest.fixture(scope="module")
def torch() -> Any:
    import torch

    return torch


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory, torch: Any) -> dict[str, BenignSample]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = build_benign_archives(tmp_path_factory.mktemp("benign-torch"), TORCH_SAMPLES)
    return {sample.name: sample for sample in samples}


def _scan(sample: BenignSample) -> FormatReport:
    return (scan_torch_zip if sample.scanner == "torch_zip" else scan_torch_legacy)(sample.path)


def _imports(report: FormatReport) -> set[str]:
    return {i.qualified_name for p in report.pickles for i in p.scan.imports}


def _dangerous(report: FormatReport) -> set[str]:
    return {
        i.qualified_name for p in report.pickles for i in p.scan.imports
        if classify(i.module, i.name).verdict is Verdict.DANGEROUS
    }


def _keys(report: FormatReport) -> set[str]:
    return {found.key for found in report.issues}


# ============================================================================================
# Benign


@pytest.mark.parametrize("name", TORCH_SAMPLES)
def test_benign_torch_file_is_clean(name: str, benign: dict[str, BenignSample]) -> None:
    report = _scan(benign[name])
    assert [f for f in report.issues if f.severity >= Severity.HIGH] == []
    assert all(p.scan.problems == () for p in report.pickles)
    assert report.pickles, "a checkpoint always holds a pickle"
    assert not _dangerous(report)
    python_globals = {g for g in _imports(report) if not g.startswith("__torch__.")}
    assert python_globals <= EXPECTED_TORCH_GLOBALS, python_globals - EXPECTED_TORCH_GLOBALS
    if name.startswith("torchscript"):
        assert report.format_detail == "torchscript-zip"
        [code] = report.issues
        assert code.rule_id == "MLA104"
        assert code.severity is Severity.MEDIUM
        assert code.key == f"torchscript-code:{name}/code/"
    else:
        assert report.issues == ()


def test_state_dict_globals(benign: dict[str, BenignSample]) -> None:
    report = _scan(benign["torch_state_dict"])
    assert _imports(report) == {
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage",
        "torch.LongStorage",
    }
    [data_pkl] = report.pickles
    assert data_pkl.member == "torch_state_dict/data.pkl"  # the folder is the file's stem


def test_legacy_stream_is_exactly_five_pickles(benign: dict[str, BenignSample]) -> None:
    report = scan_torch_legacy(benign["torch_legacy_state_dict"].path)
    assert report.format_detail == "pytorch-legacy"
    [stream] = report.pickles
    assert stream.member is None
    assert stream.scan.pickles == 5
    assert {i.pickle_index for i in stream.scan.imports} == {3}  # only the object pickle
    # the raw storage bytes after the fifth pickle were not walked
    assert stream.scan.problems == ()


def test_legacy_tar_layout_is_followed(benign: dict[str, BenignSample]) -> None:
    report = scan_torch_legacy(benign["torch_legacy_tar"].path)
    assert report.format_detail == "pytorch-legacy-tar"
    by_member = {p.member: p.scan for p in report.pickles}
    assert by_member["storages"].pickles == 3  # count, one storage's args, views
    assert by_member["tensors"].pickles == 2
    assert by_member["pickle"].pickles == 1
    assert report.issues == ()


def test_prefix_folder_varies(torch: Any, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer)  # saved to a buffer: folder "archive"
    path = tmp_path / "renamed-checkpoint.bin"
    path.write_bytes(buffer.getvalue())
    report = scan_torch_zip(path)
    assert report.issues == ()
    assert [p.member for p in report.pickles] == ["archive/data.pkl"]


# ============================================================================================
# Hostile, beyond the shared corpus


def _legacy_stream(torch: Any, obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def _pickle_ends(data: bytes, count: int) -> list[int]:
    import pickletools

    stream = io.BytesIO(data)
    ends = []
    for _ in range(count):
        for opcode, _arg, _pos in pickletools.genops(stream):
            if opcode.name == "STOP":
                break
        ends.append(stream.tell())
    return ends


@pytest.mark.parametrize("position", [0, 1, 2, 4], ids=["magic", "protocol", "sysinfo", "keys"])
def test_payload_in_any_legacy_header_pickle(
    torch: Any, tmp_path: Path, position: int
) -> None:
    data = _legacy_stream(torch, {"w": torch.ones(2)})
    ends = [0, *_pickle_ends(data, 5)]
    hostile = pickle.dumps(_system(tmp_path / "canary"), protocol=2)
    patched = data[: ends[position]] + hostile + data[ends[position + 1]:]
    path = tmp_path / "legacy.pt"
    path.write_bytes(patched)
    report = scan_torch_legacy(path)
    assert SYSTEM in _dangerous(report)
    if position in (0, 1):
        # torch.load unpickles the first pickles before it checks them, then stops
        assert {"torch-legacy-magic", "torch-legacy-protocol"} & _keys(report)


def test_pickle_after_the_legacy_storages_is_not_scanned(torch: Any, tmp_path: Path) -> None:
    canary = tmp_path / "after-storages.canary"
    data = _legacy_stream(torch, {"w": torch.arange(6.0)})
    path = tmp_path / "appended.pt"
    path.write_bytes(data + pickle.dumps(_system(canary), protocol=2))
    report = scan_torch_legacy(path)
    # torch.load reads exactly five pickles and the storages; the appended pickle never runs
    assert SYSTEM not in _imports(report)
    assert report.issues == ()
    # and indeed torch.load does not run it (in a child process, as a liveness counterpart)
    subprocess.run(
        [sys.executable, "-c", "import sys, torch; torch.load(sys.argv[1], weights_only=False)",
         str(path)], capture_output=True, timeout=120, check=True,
    )
    assert not canary.exists()


def test_wrong_magic_stops_the_scan(tmp_path: Path) -> None:
    data = pickle.dumps(12345, protocol=2) + pickle.dumps(_system(tmp_path / "c"), protocol=2)
    path = tmp_path / "magic.pt"
    path.write_bytes(data)
    report = scan_torch_legacy(path)
    assert "torch-legacy-magic" in _keys(report)
    assert SYSTEM not in _imports(report)  # torch raises before the second pickle


def test_truncated_legacy_stream_is_malformed_pickle(torch: Any, tmp_path: Path) -> None:
    data = _legacy_stream(torch, {"w": torch.ones(2)})
    end_of_object = _pickle_ends(data, 4)[-1]
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: end_of_object - 3])
    report = scan_torch_legacy(path)
    [malformed] = [f for f in report.issues if f.rule_id == "MLA101"]
    assert malformed.key == "malformed-pickle"
    assert malformed.severity is Severity.HIGH
    assert malformed.pointer is not None
    assert malformed.pointer.startswith("offset ")


def _legacy_tar(path: Path, storages: bytes, tensors: bytes, main: bytes) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("storages", storages), ("tensors", tensors), ("pickle", main)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_payload_after_legacy_tar_storage_data(torch: Any, tmp_path: Path) -> None:
    hostile = pickle.dumps(_system(tmp_path / "c"), protocol=2)
    storages = (
        pickle.dumps(2, protocol=2)
        + pickle.dumps((0, "cpu", torch.FloatStorage), protocol=2)
        + struct.pack("<q", 2) + struct.pack("<2f", 1.0, 2.0)
        + hostile  # the second storage's argument pickle, after raw float data
        + struct.pack("<q", 0)
        + pickle.dumps([], protocol=2)
    )
    path = _legacy_tar(tmp_path / "t.tar", storages, pickle.dumps(0, protocol=2),
                       pickle.dumps({}, protocol=2))
    report = scan_torch_legacy(path)
    assert SYSTEM in _dangerous(report)


@pytest.mark.parametrize("hostile_first", [True, False])
def test_legacy_tar_duplicate_pickle_members(tmp_path: Path, hostile_first: bool) -> None:
    """torch reads the last member named 'pickle' (tarfile.getmember, probed with torch.load
    in a child process); the other one is scanned by content, and the pair is a finding."""
    hostile = pickle.dumps(_system(tmp_path / "c"), protocol=2)
    benign = pickle.dumps({}, protocol=2)
    first, last = (hostile, benign) if hostile_first else (benign, hostile)
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            ("storages", pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)),
            ("tensors", pickle.dumps(0, protocol=2)), ("pickle", first), ("pickle", last),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    report = scan_torch_legacy(path)
    assert SYSTEM in _dangerous(report)
    assert "duplicate-member:pickle" in _keys(report)
    assert len([p for p in report.pickles if p.member == "pickle"]) == 2


def test_other_torch_zip_members_are_scanned_by_content(torch: Any, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    path = tmp_path / "extra.pt"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as original, zipfile.ZipFile(
        path, "w"
    ) as out:
        for info in original.infolist():
            out.writestr(info, original.read(info))
        out.writestr("archive/extra/notes.txt", pickle.dumps(_system(tmp_path / "c"), protocol=2))
    report = scan_torch_zip(path)
    assert SYSTEM in _dangerous(report)
    assert "archive/extra/notes.txt" in {p.member for p in report.pickles}


def test_case_variant_data_pkl_is_what_torch_reads(torch: Any, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    path = tmp_path / "upper.pt"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as original, zipfile.ZipFile(
        path, "w"
    ) as out:
        for info in original.infolist():
            out.writestr(info.filename.replace("data.pkl", "DATA.PKL"), original.read(info))
    report = scan_torch_zip(path)
    assert "torch-missing-data-pkl:archive/data.pkl" not in _keys(report)
    assert "archive/DATA.PKL" in {p.member for p in report.pickles}
    assert "torch._utils._rebuild_tensor_v2" in _imports(report)


def test_unfollowable_legacy_tar_layout(tmp_path: Path) -> None:
    storages = pickle.dumps("not a count", protocol=2)
    path = _legacy_tar(tmp_path / "t.tar", storages, pickle.dumps(0, protocol=2),
                       pickle.dumps({}, protocol=2))
    report = scan_torch_legacy(path)
    assert "unscannable-pickle:storages" in _keys(report)


def test_torchscript_python_payload_in_constants(torch: Any, tmp_path: Path) -> None:
    # torch.jit.load's own unpickler refuses Python globals ("Unknown type name"), so this is
    # not live under torch 2.x; a Python tool that reads constants.pkl with pickle would run
    # it. The scanner reports it either way.
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buffer)
    path = tmp_path / "ts.pt"
    with zipfile.ZipFile(buffer) as original, zipfile.ZipFile(path, "w") as out:
        for info in original.infolist():
            data = original.read(info.filename)
            if info.filename.endswith("/constants.pkl"):
                data = pickle.dumps(_system(tmp_path / "c"), protocol=2)
            out.writestr(info.filename, data)
    report = scan_torch_zip(path)
    assert SYSTEM in _dangerous(report)
    [embedded] = [p for p in report.pickles if p.member and p.member.endswith("constants.pkl")]
    assert SYSTEM in {i.qualified_name for i in embedded.scan.imports}


def test_zip_without_data_pkl(tmp_path: Path) -> None:
    path = tmp_path / "nodata.pt"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("archive/version", b"3\n")
        out.writestr("archive/data/0", bytes(8))
    report = scan_torch_zip(path)
    [missing] = [f for f in report.issues if f.key.startswith("torch-missing-data-pkl")]
    assert missing.rule_id == "MLA107"
    assert missing.severity is Severity.HIGH


def test_malformed_data_pkl(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\n(")  # cut mid-pickle
    report = scan_torch_zip(path)
    [malformed] = [f for f in report.issues if f.rule_id == "MLA101"]
    assert malformed.key == "malformed-pickle:archive/data.pkl"
    assert "os.system" in _imports(report)  # what ran before the break is still reported


def test_pickle_prepended_to_a_torch_zip_is_read_as_legacy(torch: Any, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(1)}, buffer)
    path = tmp_path / "polyglot.pt"
    path.write_bytes(pickle.dumps(_system(tmp_path / "c"), protocol=2) + buffer.getvalue())
    report = scan_torch_zip(path)
    # torch.load only treats files starting with PK\x03\x04 as zips: it unpickles this one
    assert SYSTEM in _dangerous(report)
    assert "prepended-data" in {k.split(":")[0] for k in _keys(report)}


def test_a_storage_that_heads_as_a_pickle_is_walked(tmp_path: Path) -> None:
    """torch reads storages raw, but another reader of the member would unpickle it."""
    path = tmp_path / "raw.pt"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        out.writestr("archive/data/0", pickle.dumps(_system(tmp_path / "c"), protocol=2))
        out.writestr("archive/byteorder", b"little")
    report = scan_torch_zip(path)
    assert [p.member for p in report.pickles] == ["archive/data.pkl", "archive/data/0"]
    assert SYSTEM in _dangerous(report)


def test_raw_storage_that_merely_starts_like_a_pickle_is_clean(tmp_path: Path) -> None:
    """Raw numbers open with a PROTO byte now and then; breaking before any import, they
    would run nothing under any pickle loader."""
    path = tmp_path / "raw.pt"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        out.writestr("archive/data/0", b"\x80\x02" + struct.pack("<4f", 0.5, -1.25, 3.0, 7.5))
        out.writestr("archive/data/1", b"(" + bytes(range(200, 255)))
        out.writestr("archive/byteorder", b"little")
    report = scan_torch_zip(path)
    assert [p.member for p in report.pickles] == ["archive/data.pkl"]
    assert report.issues == ()


# ============================================================================================
# Properties


@pytest.fixture(scope="module")
def seeds(benign: dict[str, BenignSample]) -> dict[str, bytes]:
    return {
        name: benign[name].path.read_bytes()
        for name in ("torch_state_dict", "torchscript_scripted", "torch_legacy_state_dict",
                     "torch_legacy_tar")
    }


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["torch_state_dict", "torchscript_scripted"]), edits=EDITS)
def test_mutated_torch_zips_always_report(
    seeds: dict[str, bytes], which: str, edits: list[tuple[str, int, bytes]]
) -> None:
    assert_reports_quickly(scan_torch_zip, mutate(seeds[which], edits))


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["torch_legacy_state_dict", "torch_legacy_tar"]), edits=EDITS)
def test_mutated_legacy_checkpoints_always_report(
    seeds: dict[str, bytes], which: str, edits: list[tuple[str, int, bytes]]
) -> None:
    assert_reports_quickly(scan_torch_legacy, mutate(seeds[which], edits))


# ============================================================================================
# torch's own name lookup, probed in a child process with harmless marker pickles

_LOAD_MARKER = r"""
import sys, warnings
warnings.simplefilter("ignore")
import torch
try:
    print(torch.load(sys.argv[1], weights_only=sys.argv[2] == "zip")["marker"])
except Exception as error:
    print("refused:", type(error).__name__)
"""


def _marker(value: str) -> bytes:
    return pickle.dumps({"marker": value}, protocol=2)


def _torch_member_rows(torch: Any) -> list[tuple[str, bytes]]:
    buffer = io.BytesIO()
    torch.save({"marker": "original"}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as original:
        return [(i.filename, original.read(i)) for i in original.infolist()]


# name of the data.pkl record(s) -> markers, in archive order
_ZIP_VARIANTS: dict[str, list[tuple[str, str]]] = {
    "upper-case": [("archive/DATA.PKL", "upper")],
    "mixed-case": [("archive/Data.Pkl", "mixed")],
    "case-pair": [("archive/data.pkl", "lower"), ("archive/DATA.PKL", "upper")],
    "dot-segment": [("archive/./data.pkl", "dotted")],
    "backslash": [("archive\\data.pkl", "backslash")],
}


@pytest.mark.parametrize("variant", _ZIP_VARIANTS)
def test_scan_reads_whatever_torch_reads_as_data_pkl(
    torch: Any, tmp_path: Path, variant: str
) -> None:
    """The miniz rule mirrored in scan_torch_zip (ASCII case folding, exact bytes otherwise),
    checked against torch itself: the member torch unpickles is one the scan walked."""
    rows = [(n, d) for n, d in _torch_member_rows(torch) if not n.endswith("/data.pkl")]
    path = tmp_path / f"{variant}.pt"
    with zipfile.ZipFile(path, "w") as out:
        for name, value in _ZIP_VARIANTS[variant]:
            out.writestr(name, _marker(value))
        for name, data in rows:
            out.writestr(name, data)
    loaded = subprocess.run(
        [sys.executable, "-c", _LOAD_MARKER, str(path), "zip"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip()
    report = scan_torch_zip(path)
    walked = {p.member for p in report.pickles}
    names = {value: name for name, value in _ZIP_VARIANTS[variant]}
    if loaded.startswith("refused"):
        assert variant in ("dot-segment", "backslash"), loaded
        assert any(key.startswith("torch-") for key in _keys(report))  # layout torch refuses
        return
    assert names[loaded] in walked
    if len(names) > 1:
        assert any(key.startswith("case-collision") for key in _keys(report))


def test_legacy_tar_lookup_is_tarfiles(torch: Any, tmp_path: Path) -> None:
    """torch.load of a legacy tar reads the last member named exactly 'pickle'."""
    path = tmp_path / "dup.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            ("storages", pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)),
            ("tensors", pickle.dumps(0, protocol=2)), ("pickle", _marker("first")),
            ("./pickle", _marker("dotted")), ("PICKLE", _marker("upper")),
            ("pickle", _marker("last")),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    loaded = subprocess.run(
        [sys.executable, "-c", _LOAD_MARKER, str(path), "tar"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip()
    assert loaded == "last"
    report = scan_torch_legacy(path)
    # the torch layout walk takes that member; every other one is scanned by content
    assert len([p for p in report.pickles if p.member in ("pickle", "./pickle", "PICKLE")]) == 4
    assert "duplicate-member:pickle" in _keys(report)
