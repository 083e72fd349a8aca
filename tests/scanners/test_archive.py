"""Tests of the archive checks (mlaudit.scanners.containers) and of the hostile container corpus.

* the hostile corpus (tests/fixtures/hostile_archives.py) of torch, numpy, compressed joblib,
  zip and tar samples: every sample is flagged by its scanner, and a liveness test loads or
  extracts each one in a child process to prove it is not defanged;
* zip and tar tricks built byte by byte: traversal, absolute names, links, devices,
  duplicates, lying sizes and headers, overlapping members, bombs, too many members;
* bounded member access (materialize, MappedWindow), and hypothesis mutations of real
  archives, which must always yield a report.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import tarfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaudit.core.findings import Severity
from mlaudit.scanners import containers as archive
from mlaudit.scanners.compressed import scan_compressed_joblib
from mlaudit.scanners.containers import (
    MappedWindow,
    SizeCapExceeded,
    inspect_tar,
    inspect_zip,
    materialize,
)
from mlaudit.scanners.format_report import MAX_COMPRESSION_RATIO, FormatReport
from mlaudit.scanners.inventory import FORMAT_SCANNERS
from mlaudit.scanners.numpy_format import scan_npy, scan_npz
from mlaudit.scanners.pickle_policy import Verdict, classify
from mlaudit.scanners.sniff import ModelFormat
from tests.fixtures.benign_archives import ZIP_PASSWORD, build_benign_archives
from tests.fixtures.hostile_archives import (
    ARCHIVE_SAMPLE_NAMES,
    BOMB_BYTES,
    SYSTEM,
    ArchiveSample,
    build_hostile_archives,
    extraction_folder,
)
from tests.fixtures.hostile_pickles import _system
from tests.fixtures.mutation import EDITS, mutate

# Each scanner as the inventory runs it (archive members scanned by content).
SCANNERS: dict[str, Callable[[Path], FormatReport]] = {
    "torch_zip": FORMAT_SCANNERS[ModelFormat.PYTORCH],
    "torch_legacy": FORMAT_SCANNERS[ModelFormat.PYTORCH_LEGACY],
    "npy": scan_npy,
    "npz": scan_npz,
    "compressed": scan_compressed_joblib,
    "zip": FORMAT_SCANNERS[ModelFormat.ZIP_ARCHIVE],
    "tar": FORMAT_SCANNERS[ModelFormat.TAR_ARCHIVE],
    "7z": FORMAT_SCANNERS[ModelFormat.SEVENZIP_ARCHIVE],
}


def _kinds(report: FormatReport) -> set[str]:
    return {found.key.split(":", 1)[0] for found in report.issues}


def _dangerous(report: FormatReport) -> set[str]:
    return {
        found.qualified_name
        for embedded in report.pickles
        for found in embedded.scan.imports
        if classify(found.module, found.name).verdict is Verdict.DANGEROUS
    }


def _gate_refuses(report: FormatReport) -> bool:
    serious = [found for found in report.issues if found.severity >= Severity.HIGH]
    problems = [p for embedded in report.pickles for p in embedded.scan.problems]
    return bool(serious or problems or _dangerous(report))


# ============================================================================================
# Hostile corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, ArchiveSample], Path]:
    directory = tmp_path_factory.mktemp("hostile-archives")
    canary = directory / "scan-canary"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = build_hostile_archives(directory, canary)
    return {sample.name: sample for sample in samples}, canary


def test_corpus_shape(corpus: tuple[dict[str, ArchiveSample], Path]) -> None:
    samples, _ = corpus
    assert len(samples) >= 14
    assert set(samples) == set(ARCHIVE_SAMPLE_NAMES)
    assert {s.scanner for s in samples.values()} == set(SCANNERS)
    assert {s.loader for s in samples.values()} == {
        "torch", "numpy", "joblib", "zip-extract", "tar-extract", "unpickle-members", "bomb"
    }
    for sample in samples.values():
        assert sample.expected_rule is not None or sample.expected_import is not None
        assert sample.expected_severity >= Severity.HIGH
        assert (sample.expected_rule is None) == (sample.expected_kind is None)


@pytest.mark.parametrize("name", ARCHIVE_SAMPLE_NAMES)
def test_hostile_sample_is_flagged(
    name: str, corpus: tuple[dict[str, ArchiveSample], Path]
) -> None:
    samples, canary = corpus
    sample = samples[name]
    report = SCANNERS[sample.scanner](sample.path)
    assert isinstance(report, FormatReport)
    if sample.expected_rule is not None:
        matching = [
            found for found in report.issues
            if found.rule_id == sample.expected_rule
            and sample.expected_kind in found.key.split(":")  # kinds of members: prefixed
        ]
        assert matching, f"{name}: no {sample.expected_rule}/{sample.expected_kind} in {report}"
        assert max(found.severity for found in matching) >= sample.expected_severity
        for found in matching:
            assert "offset" not in found.key  # keys are stable: kind + member, never offsets
    if sample.expected_import is not None:
        assert sample.expected_import in _dangerous(report), (name, report.pickles)
    assert _gate_refuses(report)
    assert not canary.exists()


def test_scanning_the_corpus_runs_nothing(
    corpus: tuple[dict[str, ArchiveSample], Path],
) -> None:
    samples, canary = corpus
    for sample in samples.values():
        SCANNERS[sample.scanner](sample.path)
        inspect_zip(sample.path)
        inspect_tar(sample.path)
    assert not canary.exists()
    assert not extraction_folder(canary).exists()

# The child process of the liveness test: loads (or extracts) each sample of one loader kind,
# continuing past errors; each sample has its own canary.
_LOAD_IN_CHILD = r"""
import io, json, os, pickle, sys, tarfile, tempfile, warnings, zipfile
warnings.simplefilter("ignore")
jobs = json.loads(sys.argv[1])

def unpickle_members(data):
    # What loading code does with an archive: open it (zipfile, py7zr, tarfile), descend into
    # the archives it holds, and unpickle the member it wants, whatever its name.
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    unpickle_members(archive.read(info))
        return
    if data[:6] == b"7z\xbc\xaf\x27\x1c":
        import py7zr
        folder = tempfile.mkdtemp()
        with py7zr.SevenZipFile(io.BytesIO(data)) as archive:
            archive.extractall(folder)
        for root, _, files in os.walk(folder):
            for name in files:
                with open(os.path.join(root, name), "rb") as handle:
                    unpickle_members(handle.read())
        return
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            contents = [archive.extractfile(m).read() for m in archive if m.isreg()]
    except tarfile.TarError:
        contents = None
    if contents is not None:
        for content in contents:
            unpickle_members(content)
        return
    try:
        pickle.loads(data)
    except Exception:
        pass

for loader, path, extract in jobs:
    try:
        if loader == "torch":
            import torch
            torch.load(path, weights_only=False)
        elif loader == "numpy":
            import numpy
            loaded = numpy.load(path, allow_pickle=True)
            if hasattr(loaded, "files"):
                for key in loaded.files:
                    loaded[key]
        elif loader == "joblib":
            import joblib
            joblib.load(path)
        elif loader == "zip-extract":
            os.makedirs(extract, exist_ok=True)
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    target = os.path.join(extract, info.filename)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with open(target, "wb") as sink:
                        sink.write(archive.read(info))
        elif loader == "unpickle-members":
            with open(path, "rb") as handle:
                unpickle_members(handle.read())
        elif loader == "tar-extract":
            os.makedirs(extract, exist_ok=True)
            with tarfile.open(path) as archive:
                if hasattr(tarfile, "fully_trusted_filter"):
                    archive.extractall(extract, filter="fully_trusted")
                else:
                    archive.extractall(extract)
    except Exception as error:
        print(f"{path}: {type(error).__name__}: {error}", file=sys.stderr)
"""


def _bomb_expands(sample: ArchiveSample) -> int:
    """How many bytes the bomb really decompresses to (counted, never kept)."""
    if sample.scanner == "zip":
        total = 0
        with zipfile.ZipFile(sample.path) as bomb:
            for info in bomb.infolist():
                with bomb.open(info) as stream:
                    while chunk := stream.read(1 << 20):
                        total += len(chunk)
        return total
    decompressor = zlib.decompressobj()
    data = sample.path.read_bytes()
    total = 0
    while data and not decompressor.eof:
        total += len(decompressor.decompress(data, 1 << 20))
        data = decompressor.unconsumed_tail
    return total


# This test deliberately runs our own harmless payloads (each only creates a canary file in
# pytest's temporary directory) in child processes, to prove each sample is live.
@pytest.mark.parametrize(
    "loader", ["torch", "numpy", "joblib", "zip-extract", "tar-extract", "unpickle-members"]
)
def test_hostile_samples_are_live(loader: str, tmp_path: Path) -> None:
    jobs = []
    canaries = {}
    for name in ARCHIVE_SAMPLE_NAMES:
        canary = tmp_path / name / f"{name}.canary"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            [sample] = build_hostile_archives(tmp_path / name / "corpus", canary, [name])
        if sample.loader != loader:
            continue
        canaries[name] = canary.absolute()
        jobs.append((loader, str(sample.path), str(extraction_folder(canary.absolute()))))
    assert jobs
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_IN_CHILD, json.dumps(jobs)],
        cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
    )
    dead = [name for name, canary in canaries.items() if not canary.exists()]
    assert not dead, (
        f"{dead} did not create their canary when loaded, so they no longer test anything; "
        f"loader exit {result.returncode}\n{result.stderr[-3000:]}"
    )


def test_bombs_are_live(corpus: tuple[dict[str, ArchiveSample], Path]) -> None:
    samples, _ = corpus
    bombs = [s for s in samples.values() if s.loader == "bomb"]
    assert {s.scanner for s in bombs} == {"zip", "compressed"}
    for sample in bombs:
        size = sample.path.stat().st_size
        assert _bomb_expands(sample) > MAX_COMPRESSION_RATIO * size + (1 << 20), sample.name


# ============================================================================================
# Zip tricks, byte by byte


def _zip(
    path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]],
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    with zipfile.ZipFile(path, "w", compression) as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, data in members:
            out.writestr(name, data)
    return path


def _issue_kinds(path: Path) -> dict[str, Severity]:
    report = inspect_zip(path)
    return {found.key.split(":", 1)[0]: found.severity for found in report.issues}


def test_plain_zip_is_clean(tmp_path: Path) -> None:
    path = _zip(tmp_path / "ok.zip", [("a/b.txt", b"x" * 100), ("a/c.bin", bytes(range(256)))],
                compression=zipfile.ZIP_DEFLATED)
    report = inspect_zip(path)
    assert report.issues == ()
    assert report.members == 2
    assert report.format_detail == "zip"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../evil.sh", "path-traversal"),
        ("model/../../evil.sh", "path-traversal"),
        ("..\\evil.bat", "path-traversal"),
        ("/etc/cron.d/evil", "absolute-path"),
        ("\\windows\\evil", "absolute-path"),
        ("C:/Users/evil", "absolute-path"),
    ],
)
def test_zip_paths_out_of_the_folder(tmp_path: Path, name: str, kind: str) -> None:
    path = _zip(tmp_path / "paths.zip", [("ok.txt", b"ok"), (name, b"payload")])
    report = inspect_zip(path)
    [found] = [f for f in report.issues if f.key == f"{kind}:{name}"]
    assert found.rule_id == "MLA103"
    assert found.severity is Severity.CRITICAL
    assert found.member == name


def test_dotted_names_are_not_traversal(tmp_path: Path) -> None:
    path = _zip(tmp_path / "dots.zip", [("a/..b/c", b"1"), ("a/b../c", b"2"), ("...", b"3")])
    assert not {"path-traversal", "absolute-path"} & set(_issue_kinds(path))


def test_zip_symlink_member(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("weights")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _zip(tmp_path / "link.zip", [(link, b"../../.bashrc")])
    assert _issue_kinds(path)["symlink"] is Severity.CRITICAL


def test_zip_device_member(tmp_path: Path) -> None:
    device = zipfile.ZipInfo("dev")
    device.external_attr = (stat.S_IFCHR | 0o644) << 16
    path = _zip(tmp_path / "dev.zip", [(device, b"")])
    assert _issue_kinds(path)["device-member"] is Severity.HIGH


def test_zip_duplicates(tmp_path: Path) -> None:
    path = _zip(tmp_path / "dup.zip", [("a.npy", b"1"), ("b", b"2"), ("a.npy", b"3"),
                                       ("./b", b"4")])
    report = inspect_zip(path)
    duplicates = {f.key: f for f in report.issues if f.key.startswith("duplicate-member:")}
    assert set(duplicates) == {"duplicate-member:a.npy", "duplicate-member:b"}
    assert all(f.severity is Severity.HIGH for f in duplicates.values())
    assert duplicates["duplicate-member:a.npy"].evidence["count"] == 2


def test_nul_in_name(tmp_path: Path) -> None:
    data = _zip(tmp_path / "a.zip", [("model.pkl#.txt", b"x")]).read_bytes()
    path = tmp_path / "nul.zip"
    path.write_bytes(data.replace(b"model.pkl#.txt", b"model.pkl\x00.txt"))
    report = inspect_zip(path)
    [found] = [f for f in report.issues if f.key.startswith("nul-in-name:")]
    assert found.member == "model.pkl"


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt):]


def _central_offset(data: bytes, index: int = 0) -> int:
    position = data.index(b"PK\x01\x02")
    for _ in range(index):
        position = data.index(b"PK\x01\x02", position + 4)
    return position


def test_declared_size_smaller_than_content(tmp_path: Path) -> None:
    original = _zip(tmp_path / "a.zip", [("w.bin", bytes(10_000))],
                    compression=zipfile.ZIP_DEFLATED).read_bytes()
    central = _central_offset(original)
    data = _patch(original, central + 24, "<I", 100)  # central uncompressed size
    data = _patch(data, 22, "<I", 100)  # local uncompressed size
    path = tmp_path / "lie.zip"
    path.write_bytes(data)
    report = inspect_zip(path)
    [found] = [f for f in report.issues if f.key == "size-mismatch:w.bin"]
    assert found.rule_id == "MLA103"
    assert found.severity >= Severity.HIGH
    assert found.evidence["declared_bytes"] == 100


def test_declared_size_larger_than_content(tmp_path: Path) -> None:
    original = _zip(tmp_path / "a.zip", [("w.bin", bytes(1000))],
                    compression=zipfile.ZIP_DEFLATED).read_bytes()
    central = _central_offset(original)
    data = _patch(_patch(original, central + 24, "<I", 5000), 22, "<I", 5000)
    path = tmp_path / "lie.zip"
    path.write_bytes(data)
    assert "size-mismatch" in _issue_kinds(path)


def test_stored_sizes_disagree(tmp_path: Path) -> None:
    original = _zip(tmp_path / "a.zip", [("w.bin", bytes(1000))]).read_bytes()
    central = _central_offset(original)
    data = _patch(_patch(original, central + 24, "<I", 900), 22, "<I", 900)
    path = tmp_path / "lie.zip"
    path.write_bytes(data)
    assert "size-mismatch" in _issue_kinds(path)


def test_crc_mismatch(tmp_path: Path) -> None:
    original = _zip(tmp_path / "a.zip", [("w.bin", b"abc" * 100)],
                    compression=zipfile.ZIP_DEFLATED).read_bytes()
    central = _central_offset(original)
    data = _patch(_patch(original, central + 16, "<I", 1234), 14, "<I", 1234)
    path = tmp_path / "crc.zip"
    path.write_bytes(data)
    assert _issue_kinds(path)["crc-mismatch"] >= Severity.HIGH


@pytest.mark.parametrize("kind", ["size-mismatch", "crc-mismatch"])
@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
def test_stream_checks_made_while_copying_out_match(
    tmp_path: Path, kind: str, compression: int
) -> None:
    """The content scan checks each stream as it copies it out (one decompression): it must
    find what inspect_zip's separate pass finds."""
    original = _zip(tmp_path / "a.zip", [("w.bin", b"abc" * 4000)], compression).read_bytes()
    central = _central_offset(original)
    field, local = (24, 22) if kind == "size-mismatch" else (16, 14)
    data = _patch(_patch(original, central + field, "<I", 100), local, "<I", 100)
    path = tmp_path / "lie.zip"
    path.write_bytes(data)
    expected = {(f.key, f.severity) for f in inspect_zip(path).issues}
    assert {(f.key, f.severity) for f in SCANNERS["zip"](path).issues} == expected
    assert any(key.split(":")[0] in (kind, "corrupt-member") for key, _ in expected)


def test_member_in_a_method_mlaudit_cannot_read_fails_closed(tmp_path: Path) -> None:
    """Zstandard (method 93): Python 3.14's zipfile reads it, this one cannot."""
    original = _zip(tmp_path / "a.zip", [("model.bin", b"x" * 100)]).read_bytes()
    central = _central_offset(original)
    path = tmp_path / "zstd.zip"
    path.write_bytes(_patch(_patch(original, central + 10, "<H", 93), 8, "<H", 93))
    for scanner in (inspect_zip, SCANNERS["zip"]):
        kinds = {f.key.split(":", 1)[0]: f.severity for f in scanner(path).issues}
        assert kinds == {"unsupported-compression": Severity.HIGH}


def test_local_header_name_differs(tmp_path: Path) -> None:
    original = _zip(tmp_path / "a.zip", [("data.pkl", b"x")]).read_bytes()
    data = original.replace(b"data.pkl", b"evil.pkl", 1)  # the local header comes first
    path = tmp_path / "local.zip"
    path.write_bytes(data)
    report = inspect_zip(path)
    [found] = [f for f in report.issues if f.key == "local-header-mismatch:data.pkl"]
    assert found.evidence["local"] == {"name": "evil.pkl"}


def test_overlapping_members(tmp_path: Path) -> None:
    original = _zip(tmp_path / "a.zip", [("a", b"same"), ("b", b"more")]).read_bytes()
    data = _patch(original, _central_offset(original, 1) + 42, "<I", 0)  # b's header -> a's
    path = tmp_path / "overlap.zip"
    path.write_bytes(data)
    kinds = _issue_kinds(path)
    assert kinds["overlapping-members"] is Severity.CRITICAL


def test_prepended_data(tmp_path: Path) -> None:
    original = _zip(tmp_path / "a.zip", [("a", b"x")]).read_bytes()
    path = tmp_path / "prefixed.zip"
    path.write_bytes(b"\x80\x04N." + original)
    assert _issue_kinds(path)["prepended-data"] is Severity.MEDIUM


def _flagged(data: bytes, bits: int) -> bytes:
    """``data`` (a one-member zip) with ``bits`` set in both the local and central flags."""
    central = _central_offset(data)
    (flags,) = struct.unpack_from("<H", data, central + 8)
    return _patch(_patch(data, central + 8, "<H", flags | bits), 6, "<H", flags | bits)


@pytest.mark.parametrize("bits", [0x1, 0x20, 0x40])
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_flagged_member_in_the_clear_is_scanned(
    tmp_path: Path, bits: int, compression: int
) -> None:
    """zipfile, numpy and torch refuse such a member (probed in test_flags_refuse_every_reader),
    but its bytes decode without a password, so they are scanned all the same."""
    payload = pickle.dumps(_system(tmp_path / "canary"), protocol=2)
    original = _zip(tmp_path / "a.zip", [("model/config.bin", payload)], compression)
    path = tmp_path / "flagged.zip"
    path.write_bytes(_flagged(original.read_bytes(), bits))
    report = SCANNERS["zip"](path)
    kinds = {found.key.split(":", 1)[0]: found.severity for found in report.issues}
    assert kinds == {"flagged-in-clear": Severity.LOW}
    assert SYSTEM in _dangerous(report)
    assert not (tmp_path / "canary").exists()


def test_really_encrypted_member_is_low_not_a_size_lie(tmp_path: Path) -> None:
    [sample] = build_benign_archives(tmp_path, ["zip_encrypted_member"])
    with zipfile.ZipFile(sample.path) as archive:  # really encrypted: the password opens it
        assert archive.read("secret/params.csv", pwd=ZIP_PASSWORD).startswith(b"name,")
    report = SCANNERS["zip"](sample.path)
    assert {f.key: f.severity for f in report.issues} == {
        "encrypted-member:secret/params.csv": Severity.LOW
    }
    assert report.pickles == ()


# Which readers open a member whose central-directory flags say encrypted or patched: none.
_READ_FLAGGED = r"""
import io, sys, warnings, zipfile
warnings.simplefilter("ignore")
kind, path = sys.argv[1:]
try:
    if kind == "zipfile":
        with zipfile.ZipFile(path) as archive:
            archive.read(archive.infolist()[0])
    elif kind == "numpy":
        import numpy
        numpy.load(path, allow_pickle=True)["a"]
    else:
        import torch
        torch.load(path, weights_only=True)
    print("read")
except Exception as error:
    print(type(error).__name__)
"""


@pytest.mark.parametrize("bits", [0x1, 0x20, 0x40])
def test_flags_refuse_every_reader(tmp_path: Path, bits: int) -> None:
    """The fact the LOW severity of a sealed member rests on, probed with the real readers."""
    import numpy as np
    import torch

    npz, pt = io.BytesIO(), io.BytesIO()
    np.savez(npz, a=np.arange(3))
    torch.save({"w": torch.ones(2)}, pt)
    plain = _zip(tmp_path / "p.zip", [("a.bin", b"plain")]).read_bytes()
    for kind, data in (("zipfile", plain), ("numpy", npz.getvalue()), ("torch", pt.getvalue())):
        path = tmp_path / f"{kind}.bin"
        path.write_bytes(_flagged(data, bits))
        result = subprocess.run(
            [sys.executable, "-c", _READ_FLAGGED, kind, str(path)],
            capture_output=True, text=True, timeout=120, check=True,
        )
        assert result.stdout.strip() != "read", (kind, bits)


def test_names_differing_only_in_case_collide(tmp_path: Path) -> None:
    path = _zip(tmp_path / "c.zip", [("model/Config.pkl", b"a"), ("model/config.PKL", b"b")])
    assert _issue_kinds(path)["case-collision"] is Severity.HIGH


def test_zip_members_are_sniffed_by_content(tmp_path: Path) -> None:
    payload = pickle.dumps(_system(tmp_path / "canary"), protocol=2)
    path = _zip(
        tmp_path / "m.zip",
        [("notes/readme.txt", b"hello"), ("weights/part-0.csv", payload)],
        zipfile.ZIP_DEFLATED,
    )
    report = SCANNERS["zip"](path)
    assert [p.member for p in report.pickles] == ["weights/part-0.csv"]
    assert SYSTEM in _dangerous(report)


def test_nesting_within_the_cap_is_scanned(tmp_path: Path) -> None:
    data = pickle.dumps(_system(tmp_path / "canary"), protocol=2)
    for level in range(archive.MAX_NESTING):
        data = _zip(tmp_path / f"{level}.zip", [(f"l{level}", data)]).read_bytes()
    report = SCANNERS["zip"](tmp_path / f"{archive.MAX_NESTING - 1}.zip")
    assert SYSTEM in _dangerous(report)
    assert not [f for f in report.issues if "nesting-too-deep" in f.key]
    [embedded] = report.pickles
    assert embedded.member == "l3/l2/l1/l0"


def test_7z_without_py7zr_is_refused_not_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [sample] = build_benign_archives(tmp_path, ["sevenzip_joblib_model"])
    monkeypatch.setitem(sys.modules, "py7zr", None)  # import py7zr now raises ImportError
    report = SCANNERS["7z"](sample.path)
    [found] = report.issues
    assert found.rule_id == "MLA103"
    assert found.severity is Severity.HIGH
    assert "pip install 'mlaudit[7z]'" in found.message


def test_7z_listing_checks(tmp_path: Path) -> None:
    import py7zr

    path = tmp_path / "t.7z"
    with py7zr.SevenZipFile(path, "w") as out:
        out.writestr(b"1", "Model.bin")
        out.writestr(b"2", "model.BIN")
    kinds = {f.key.split(":", 1)[0]: f.severity for f in SCANNERS["7z"](path).issues}
    assert kinds == {"case-collision": Severity.HIGH}


def test_encrypted_7z_is_refused(tmp_path: Path) -> None:
    import py7zr

    path = tmp_path / "e.7z"
    with py7zr.SevenZipFile(path, "w", password="secret") as out:
        out.writestr(b"x", "a.bin")
    kinds = {f.key.split(":", 1)[0]: f.severity for f in SCANNERS["7z"](path).issues}
    assert kinds == {"7z-encrypted": Severity.HIGH}


def test_too_many_members_declared(tmp_path: Path) -> None:
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF - 1, 0xFFFF - 1, 0, 0, 0)
    path = tmp_path / "many.zip"
    path.write_bytes(eocd)
    report = inspect_zip(path)
    assert "too-many-members" not in _kinds(report)  # 65534 is below the cap
    bigger = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, 0, 0, 0)
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, 0, 1)
    eocd64 = b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, 10**9, 10**9, 0, 0)
    path.write_bytes(eocd64 + locator + bigger)
    report = inspect_zip(path)
    [found] = [f for f in report.issues if f.key == "too-many-members"]
    assert found.evidence["members"] == 10**9


def test_too_many_members_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_ARCHIVE_MEMBERS", 5)
    path = _zip(tmp_path / "six.zip", [(f"m{i}", b"") for i in range(6)])
    assert "too-many-members" in _issue_kinds(path)


def test_declared_bomb_by_absolute_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_DECOMPRESSED_BYTES", 1000)
    path = _zip(tmp_path / "big.zip", [("a", b"x" * 600), ("b", b"y" * 600)])
    report = inspect_zip(path)
    assert "decompression-bomb" in _kinds(report)


@pytest.mark.parametrize(
    "data",
    [b"", b"PK\x03\x04", b"PK\x05\x06" + bytes(18), b"not a zip" * 10, bytes(100)],
    ids=["empty", "magic-only", "empty-eocd", "text", "zeros"],
)
def test_garbage_zip_is_an_issue_not_an_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "garbage.zip"
    path.write_bytes(data)
    report = inspect_zip(path)
    assert isinstance(report, FormatReport)


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    for function in SCANNERS.values():
        with pytest.raises(FileNotFoundError):
            function(tmp_path / "missing")


# ============================================================================================
# Tar tricks


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _tar_kinds(path: Path) -> dict[str, Severity]:
    return {f.key.split(":", 1)[0]: f.severity for f in inspect_tar(path).issues}


def test_plain_tar_is_clean(tmp_path: Path) -> None:
    path = _tar(tmp_path / "ok.tar.gz", [("a/b.txt", b"hello"), ("a/c", b"x" * 5000)], "w:gz")
    report = inspect_tar(path)
    assert report.issues == ()
    assert report.members == 2


def test_tar_hardlink_device_fifo(tmp_path: Path) -> None:
    hard = tarfile.TarInfo("hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "/etc/passwd"
    device = tarfile.TarInfo("dev")
    device.type = tarfile.CHRTYPE
    fifo = tarfile.TarInfo("fifo")
    fifo.type = tarfile.FIFOTYPE
    path = _tar(tmp_path / "t.tar", [hard, device, fifo])
    report = inspect_tar(path)
    by_key = {f.key: f for f in report.issues}
    assert by_key["hardlink:hard"].severity is Severity.CRITICAL
    assert by_key["device-member:dev"].severity is Severity.HIGH
    assert by_key["device-member:fifo"].severity is Severity.HIGH


def test_tar_duplicates_and_traversal(tmp_path: Path) -> None:
    path = _tar(tmp_path / "t.tar", [("a", b"1"), ("a", b"2"), ("../up", b"3")])
    kinds = _tar_kinds(path)
    assert kinds["duplicate-member"] is Severity.HIGH
    assert kinds["path-traversal"] is Severity.CRITICAL


def test_tar_members_are_sniffed_by_content(tmp_path: Path) -> None:
    payload = pickle.dumps(_system(tmp_path / "canary"), protocol=2)
    path = _tar(tmp_path / "t.tar.bz2", [("a/notes.txt", b"hi"), ("a/blob", payload)], "w:bz2")
    report = SCANNERS["tar"](path)
    assert [p.member for p in report.pickles] == ["a/blob"]
    assert SYSTEM in _dangerous(report)
    assert not (tmp_path / "canary").exists()


def test_tar_gz_bomb(tmp_path: Path) -> None:
    path = _tar(tmp_path / "bomb.tar.gz", [("zeros", bytes(16 * 1024**2)), ("after", b"x")],
                "w:gz")
    started = time.monotonic()
    report = inspect_tar(path)
    [bomb] = [f for f in report.issues if f.key.startswith("decompression-bomb")]
    assert bomb.severity is Severity.CRITICAL
    assert bomb.member == "zeros"  # stopped before decompressing the member's data
    assert report.members == 1
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("data", [b"", b"garbage" * 100], ids=["empty", "text"])
def test_garbage_tar_is_an_issue(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "g.tar"
    path.write_bytes(data)
    report = inspect_tar(path)
    assert "unreadable-tar" in _kinds(report)


def test_empty_tar_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.tar"
    path.write_bytes(bytes(1024))  # two end-of-archive blocks: a tar with no members
    report = inspect_tar(path)
    assert report.issues == ()
    assert report.members == 0


# ============================================================================================
# Bounded member access


def test_materialize_within_cap(tmp_path: Path) -> None:
    written = materialize(lambda: io.BytesIO(b"x" * 1000), 1000, tmp_path)
    assert written.read_bytes() == b"x" * 1000
    assert written.parent == tmp_path


def test_materialize_cap_exceeded_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(SizeCapExceeded) as caught:
        materialize(lambda: io.BytesIO(b"x" * 1001), 1000, tmp_path)
    assert caught.value.limit == 1000
    assert list(tmp_path.iterdir()) == []


def test_materialize_reads_at_most_one_byte_past_the_cap(tmp_path: Path) -> None:
    class Endless(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            assert size >= 0
            self.served += size
            return b"\x00" * size

    endless = Endless()
    with pytest.raises(SizeCapExceeded):
        materialize(lambda: endless, 10_000_000, tmp_path)  # type: ignore[arg-type,return-value]
    assert endless.served <= 10_000_001


def test_mapped_window() -> None:
    data = b"line one\nline two\nrest"
    view = MappedWindow(data, 5, 20)
    assert view.size == 15
    assert view.readline() == b"one\n"
    assert view.tell() == 4
    assert view.read(4) == b"line"
    sub = view.window(2, 6)
    assert sub.read() == b"e\nli"
    view.seek(0, os.SEEK_END)
    assert view.read() == b""
    view.seek(-2, os.SEEK_END)
    assert view.read(10) == b"re"
    with pytest.raises(OSError, match="before the start"):
        view.seek(-1)


# ============================================================================================
# Properties: mutated real archives always give a report, fast


def _seed_zips() -> list[bytes]:
    import numpy as np

    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w") as out:
        out.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        out.writestr("archive/data/0", bytes(range(64)))
        out.writestr("archive/version", b"3\n")
    npz = io.BytesIO()
    np.savez_compressed(npz, a=np.arange(50.0), b=np.array(["x", None], dtype=object))
    return [stored.getvalue(), npz.getvalue()]


def _seed_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("storages", b"\x80\x02K\x00.\x80\x02].",), ("pickle", b"\x80\x02N."),):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


_SEEDS: list[bytes] = []


def assert_reports_quickly(function: Callable[[Path], FormatReport], data: bytes) -> None:
    """``function`` returns a FormatReport for ``data`` (never raises), within seconds."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mutated"
        path.write_bytes(data)
        started = time.monotonic()
        report = function(path)
        assert isinstance(report, FormatReport)
        assert time.monotonic() - started < 5


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1), edits=EDITS)
def test_mutated_zips_always_report(seed: int, edits: list[tuple[str, int, bytes]]) -> None:
    if not _SEEDS:
        _SEEDS.extend(_seed_zips())
    data = mutate(_SEEDS[seed], edits)
    assert_reports_quickly(SCANNERS["zip"], data)  # inspect_zip, then members by content


@settings(max_examples=100, deadline=None, derandomize=True)
@given(edits=EDITS)
def test_mutated_tars_always_report(edits: list[tuple[str, int, bytes]]) -> None:
    assert_reports_quickly(SCANNERS["tar"], mutate(_seed_tar(), edits))


def _seed_7z() -> bytes:
    import py7zr

    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w") as out:
        out.writestr(b"\x80\x02}q\x00.", "model/state.bin")
        out.writestr(b"notes\n" * 40, "README")
    return buffer.getvalue()


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(edits=EDITS)
def test_mutated_7z_always_report(edits: list[tuple[str, int, bytes]]) -> None:
    assert_reports_quickly(SCANNERS["7z"], mutate(_seed_7z(), edits))



def test_7z_bomb_is_refused_by_its_listing(tmp_path: Path) -> None:
    import py7zr

    path = tmp_path / "bomb.7z"
    with py7zr.SevenZipFile(path, "w") as out:
        out.writestr(bytes(BOMB_BYTES), "weights.bin")
    report = SCANNERS["7z"](path)
    assert {f.key: f.severity for f in report.issues} == {
        "decompression-bomb": Severity.CRITICAL
    }


def test_7z_extraction_stops_at_the_cap_whatever_the_listing_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writers count what py7zr really produces: a listing that lies is no way past."""
    import py7zr

    from mlaudit.scanners import sevenzip

    path = tmp_path / "bomb.7z"
    with py7zr.SevenZipFile(path, "w") as out:
        out.writestr(bytes(BOMB_BYTES), "weights.bin")
    monkeypatch.setattr(sevenzip, "_listing_issues", lambda listing, path: [])
    report = SCANNERS["7z"](path)
    assert {f.key: f.severity for f in report.issues} == {
        "decompression-bomb": Severity.CRITICAL
    }
