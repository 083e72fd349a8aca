"""PyTorch checkpoints: the zip format of ``torch.save`` and ``torch.jit.save``, and the legacy
formats ``torch.load`` still reads. Nothing imports torch.

What is scanned is what ``torch.load(weights_only=False)`` would unpickle, and every other
member by its content (another reader may load it):

* zip checkpoints (``<folder>/data.pkl`` plus raw ``data/<n>`` storages): every ``*.pkl`` and
  ``*.debug_pkl`` member is walked as a pickle, each duplicate separately. Names are compared
  the way PyTorch's reader (miniz) compares them, established by loading probe archives:
  ``<folder>`` is the first central-directory entry's folder, and a record is found by
  comparing the name's bytes with ASCII letters folded to lower case, so ``ARCHIVE/DATA.PKL``
  is ``data.pkl`` to torch; of several names that match, which one it reads depends on the
  directory's layout, so every one is scanned and the collision is a finding. Storages
  (``<folder>/data/...``) are raw bytes to torch: only their head is sniffed, and they are
  walked as pickles only if it says pickle. TorchScript archives (those with
  ``constants.pkl``) also carry code under ``code/``, which torch compiles: MLA104 reads it.
  Every other member is scanned by content.
* the legacy stream of ``_use_new_zipfile_serialization=False``: exactly five pickles (magic
  number, protocol version, system info, the object, the storage keys), then raw storage
  bytes that are never unpickled. Nothing after the fifth pickle is scanned; if the magic
  number or protocol version is wrong, torch stops there and so does the scan.
* the older tar format (members ``storages``, ``tensors``, ``pickle``), which ``torch.load``
  tries first on any real file: the count pickles, every per-storage and per-tensor pickle
  (their raw data is stepped over exactly as torch reads it) and the ``pickle`` member. torch
  finds each with ``tarfile``'s lookup, the last member of exactly that name; every other
  member (earlier duplicates included) is scanned by content, and duplicate names are findings.
"""

from __future__ import annotations

import dataclasses
import pickletools
import re
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from mlaudit.core.errors import InputError
from mlaudit.core.findings import JsonValue, Severity
from mlaudit.scanners.containers import (
    READ_ERRORS,
    MappedWindow,
    MemberScanner,
    MemberUnreadable,
    OpenZip,
    ZipEntry,
    embedded_scan,
    encoded_name,
    issue,
    list_tar,
    mapped_file,
    member_view,
    open_zip,
    tar_members_by_content,
    zip_members_by_content,
)
from mlaudit.scanners.format_report import ArtifactIssue, EmbeddedPickle, FormatReport
from mlaudit.scanners.pickle import PickleScan
from mlaudit.scanners.sniff import sniff_model_format

__all__ = ["scan_torch_legacy", "scan_torch_zip"]

MAGIC_NUMBER: Final = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION: Final = 1001
_LEGACY_PICKLES: Final = ("magic number", "protocol version", "system info", "object",
                          "storage keys")
_TAR_MEMBERS: Final = ("storages", "tensors", "pickle")
_ZIP_MAGIC: Final = b"PK\x03\x04"
_MAX_CODE_BYTES: Final = 16 * 1024**2
_MAX_CONSTANT_PICKLE: Final = 64
_OPCODES: Final = {opcode.code: opcode for opcode in pickletools.opcodes}
# How much of a raw storage is sniffed: all that deciding "pickle" reads
# (see mlaudit.scanners.sniff).
_STORAGE_HEAD: Final = 4096

# TorchScript operations that reach the file system by path. TorchScript code is otherwise
# confined to torch's operators, so these are what turns a scripted ``__setstate__`` (run
# by torch.jit.load) into a file write.
_FILE_OPS: Final = re.compile(r"\bfrom_file\b|\baten::from_file\b")
_SETSTATE: Final = re.compile(r"\bdef __setstate__\b")

# Element sizes of the typed storages a legacy tar checkpoint names (torch.<Name>Storage).
_STORAGE_SIZES: Final = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "BFloat16Storage": 2, "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8,
    "QUInt8Storage": 1, "QInt8Storage": 1, "QInt32Storage": 4, "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
}


# ============================================================================================
# Zip checkpoints


def _is_pickle_member(entry: ZipEntry) -> bool:
    return _folded(entry).endswith((b"pkl", b".pickle"))


def _folded(entry: ZipEntry) -> bytes:
    """The name as miniz compares it: its bytes, ASCII letters folded to lower case."""
    return encoded_name(entry).lower()  # bytes.lower() folds ASCII only, as miniz does


def scan_torch_zip(path: Path, scan_member: MemberScanner) -> FormatReport:
    """Scan a PyTorch zip checkpoint or TorchScript archive; members torch does not read as
    pickles or storages are scanned by content with ``scan_member``. Raises only OSError."""
    with path.open("rb") as handle:
        head = handle.read(4)
    with open_zip(path) as opened:
        issues = list(opened.issues)
        pickles: list[EmbeddedPickle] = []
        detail = "pytorch-zip"
        others = FormatReport("")
        if opened.readable and opened.entries:
            detail, rest = _scan_torch_entries(opened, issues, pickles)
            others = zip_members_by_content(opened, rest, scan_member)
        report = FormatReport(detail, tuple(issues), tuple(pickles), len(opened.entries))
        report = report.merged(others)
    if head != _ZIP_MAGIC:
        # torch.load only treats files that start with a local header as zip archives; this
        # one it reads as a legacy checkpoint, whatever else it is.
        report = report.merged(scan_torch_legacy(path, scan_member))
    return report


def _scan_torch_entries(
    opened: OpenZip, issues: list[ArtifactIssue], pickles: list[EmbeddedPickle]
) -> tuple[str, list[ZipEntry]]:
    """Walk what torch reads (pickles, storage heads); returns the detail and the rest."""
    entries = opened.entries
    first = entries[0].name
    prefix = first.split("/", 1)[0] + "/" if "/" in first else ""
    folder = encoded_name(entries[0]).split(b"/", 1)[0].lower() + b"/" if prefix else b""
    issues.extend(_layout_issues(entries, prefix, folder))
    known = {(found.rule_id, found.key) for found in issues}
    # TorchScript source, which torch compiles (MLA104 reads it), is not scanned by content.
    code = [e for e in entries if _folded(e).startswith(folder + b"code/")
            and _folded(e).endswith(b".py")]
    compiled = {e.index for e in code}
    rest: list[ZipEntry] = []
    for entry in entries:
        if entry.is_dir or entry.sealed or entry.index in compiled:
            continue
        storage = bool(folder) and _folded(entry).startswith(folder + b"data/")
        if not _is_pickle_member(entry) and not storage:
            rest.append(entry)
            continue
        embedded: EmbeddedPickle | None
        try:
            with member_view(opened, entry) as view:
                if _is_pickle_member(entry):
                    found, embedded = embedded_scan(view, entry.name)
                else:
                    found, embedded = _storage_scan(view, entry.name, opened)
        except MemberUnreadable as error:
            if (error.issue.rule_id, error.issue.key) not in known:
                issues.append(error.issue)
            continue
        issues.extend(found)
        if embedded is not None:
            pickles.append(embedded)
    if code:
        issues.extend(_torchscript_code_issues(opened, prefix, code))
    torchscript = folder + b"constants.pkl" in {_folded(e) for e in entries}
    return ("torchscript-zip" if torchscript or code else "pytorch-zip"), rest


def _layout_issues(entries: list[ZipEntry], prefix: str, folder: bytes) -> list[ArtifactIssue]:
    """A first member outside any folder, members outside it, and no data.pkl for torch."""
    first = entries[0].name
    found = []
    if not prefix:
        found.append(
            issue(
                "MLA107", "torch-no-folder", "PyTorch archive without a top folder",
                f"the first member {first!r} is not in a folder; torch.load refuses such "
                "archives", Severity.MEDIUM, member=first,
            )
        )
    outside = [e.name for e in entries if not e.name.startswith(prefix)]
    for name in dict.fromkeys(outside):
        found.append(
            issue(
                "MLA107", "torch-member-outside-folder", "Member outside the archive folder",
                f"member {name!r} is outside the folder {prefix!r} of the first member; "
                "torch.load refuses the archive, other readers may not",
                Severity.MEDIUM, member=name,
            )
        )
    if folder + b"data.pkl" not in {_folded(e) for e in entries}:
        found.append(
            issue(
                "MLA107", "torch-missing-data-pkl", "PyTorch archive without data.pkl",
                f"there is no {prefix}data.pkl, the pickle every PyTorch archive holds; this is "
                "not a checkpoint torch.save wrote", Severity.HIGH, member=f"{prefix}data.pkl",
            )
        )
    return found


def _storage_scan(
    view: MappedWindow, name: str, opened: OpenZip
) -> tuple[list[ArtifactIssue], EmbeddedPickle | None]:
    """A raw storage, walked as a pickle only if its head sniffs as one.

    Raw numbers start like a pickle now and then; such bytes that break before importing
    anything would run nothing under any pickle loader, so they are not reported.
    """
    view.seek(0)
    head = view.read(_STORAGE_HEAD)
    assert opened.directory is not None
    with tempfile.NamedTemporaryFile(dir=opened.directory, prefix="head-") as sample:
        sample.write(head)
        sample.flush()
        try:
            pickle_head = sniff_model_format(Path(sample.name)).pickle_based
        except InputError:
            pickle_head = False
    if not pickle_head:
        return [], None
    found, embedded = embedded_scan(view, name)
    if found and not embedded.scan.imports:
        return [], None
    return found, embedded


def _torchscript_code_issues(
    opened: OpenZip, prefix: str, code: list[ZipEntry]
) -> Iterator[ArtifactIssue]:
    """File access in TorchScript source (``code`` holds its ``.py`` members), and its presence."""
    hooks: list[JsonValue] = []
    for entry in code:
        text = _read_text(opened, entry)
        if text is None:
            continue
        if _SETSTATE.search(text):
            hooks.append(entry.name)
        calls = sorted(set(_FILE_OPS.findall(text)))
        if calls:
            yield issue(
                "MLA104", "torchscript-file-access", "TorchScript code that opens files",
                f"TorchScript code in {entry.name!r} calls {', '.join(calls)}, which creates or "
                "maps a file by path; code in a scripted __setstate__ runs as the archive is "
                "loaded",
                Severity.HIGH, member=entry.name,
                evidence={"calls": calls, "load_time_hook": entry.name in hooks},
            )
    yield issue(
        "MLA104", "torchscript-code", "TorchScript code",
        f"the archive carries {len(code)} TorchScript source files under {prefix}code/: "
        "TorchScript code runs in torch's interpreter when loaded (scripted __setstate__ "
        "methods) and when the model is called",
        Severity.MEDIUM, member=f"{prefix}code/",
        evidence={
            "files": len(code),
            "load_time_hooks": hooks[:20],
        },
    )


def _read_text(opened: OpenZip, entry: ZipEntry) -> str | None:
    if entry.file_size > _MAX_CODE_BYTES:
        return None
    try:
        with member_view(opened, entry) as view:
            return view.read(_MAX_CODE_BYTES).decode("utf-8", "replace")
    except MemberUnreadable:
        return None  # inspect_zip already reported why


# ============================================================================================
# Legacy formats


class _Broken(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def _pickle_end(view: MappedWindow, start: int, *, raw: bool) -> int:
    """Where ``pickle.load`` leaves the file after the pickle at ``start``.

    Opcode arguments are stepped over, never read into memory. With ``raw`` (an unbuffered
    file, as in the tar format) the C unpickler reads whole frames, so it stops at the end of
    the last frame if that lies past the STOP opcode.
    """
    view.seek(start)
    frame_end = start
    while True:
        position = view.tell()
        code = view.read(1)
        if not code:
            raise _Broken("pickle ended without a STOP opcode", position)
        opcode = _OPCODES.get(code.decode("latin-1"))
        if opcode is None:
            raise _Broken(f"unknown opcode {code!r}", position)
        if opcode.name == "STOP":
            return max(view.tell(), frame_end) if raw else view.tell()
        argument = opcode.arg
        if argument is None:
            continue
        width = argument.n
        if width >= 0:
            data = view.read(width)
            if len(data) < width:
                raise _Broken("truncated opcode argument", position)
            if opcode.name == "FRAME":
                frame_end = view.tell() + int.from_bytes(data, "little")
            continue
        if width == pickletools.UP_TO_NEWLINE:
            lines = 2 if argument.name == "stringnl_noescape_pair" else 1
            for _ in range(lines):
                if not _skip_line(view):
                    raise _Broken("truncated text argument", position)
            continue
        size_width = {
            pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
            pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8,
        }[width]
        data = view.read(size_width)
        if len(data) < size_width:
            raise _Broken("truncated length", position)
        length = int.from_bytes(data, "little", signed=width == pickletools.TAKEN_FROM_ARGUMENT4)
        if length < 0 or view.tell() + length > view.size:
            raise _Broken("argument runs past the end of the data", position)
        view.seek(length, 1)


def _skip_line(view: MappedWindow) -> bool:
    line = view.readline(1 << 20)
    while line and not line.endswith(b"\n"):
        line = view.readline(1 << 20)
    return bool(line)


def _small_int(view: MappedWindow, start: int, end: int) -> int | None:
    """The value of a pickle that is only an integer constant, else None."""
    if end - start > _MAX_CONSTANT_PICKLE:
        return None
    view.seek(start)
    data = view.read(end - start)
    value: int | None = None
    try:
        for opcode, argument, _ in pickletools.genops(data):
            name = opcode.name
            if name in ("PROTO", "FRAME", "STOP", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                continue
            if (
                value is None
                and isinstance(argument, int)
                and not isinstance(argument, bool)
                and name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4")
            ):
                value = argument
                continue
            return None
    except (ValueError, OverflowError):
        return None
    return value


@dataclasses.dataclass
class _Sequence:
    """Accumulates the consecutive pickles of one legacy stream into one scan."""

    member: str | None
    issues: list[ArtifactIssue] = dataclasses.field(default_factory=list)
    scans: list[PickleScan] = dataclasses.field(default_factory=list)
    broken: bool = False

    def scan(self, view: MappedWindow, start: int, role: str, *, raw: bool) -> int | None:
        """Scan the pickle at ``start``; returns where the loader continues (None: broken)."""
        index = len(self.scans)
        try:
            end = _pickle_end(view, start, raw=raw)
        except _Broken:
            end = None
        window = view.window(start, view.size if end is None else end)
        label = f"{self.member or 'file'} ({role} pickle)"
        found, embedded = embedded_scan(
            window, self.member, offset=start, pickle_index=index, label=label
        )
        self.scans.append(embedded.scan)
        self.issues.extend(found)
        if end is None and not found:
            _unfollowable(self, f"the end of the {role} pickle cannot be found", start)
        if end is None or found:
            self.broken = True
            return None
        return end

    def stop(self, message: str, start: int, kind: str) -> None:
        self.issues.append(
            issue(
                "MLA107", kind, "Not a PyTorch legacy checkpoint", message, Severity.HIGH,
                member=self.member, pointer=f"offset {start}",
            )
        )
        self.broken = True

    def embedded(self, size: int) -> EmbeddedPickle | None:
        if not self.scans:
            return None
        imports = tuple(i for scan in self.scans for i in scan.imports)
        problems = tuple(p for scan in self.scans for p in scan.problems)
        merged = PickleScan(
            imports=imports,
            problems=problems,
            pickles=sum(scan.pickles for scan in self.scans),
            protocol=max(scan.protocol for scan in self.scans),
            joblib_arrays=sum(scan.joblib_arrays for scan in self.scans),
            size=size,
        )
        return EmbeddedPickle(self.member, merged)


def scan_torch_legacy(path: Path, scan_member: MemberScanner) -> FormatReport:
    """Scan a non-zip PyTorch checkpoint as ``torch.load`` would read it; tar members torch
    does not read are scanned by content with ``scan_member``. Raises only OSError."""
    with mapped_file(path) as view:
        if _is_plain_tar(path):
            report = _scan_legacy_tar(path, view, scan_member)
            view.seek(0)
            if view.read(1) != b"\x80":
                return report
            # Also a pickle stream: torch.load of a buffer (no file descriptor) skips the tar
            # attempt and reads the same bytes as the legacy pickle stream.
            return report.merged(_scan_legacy_stream(view))
        return _scan_legacy_stream(view)


def _is_plain_tar(path: Path) -> bool:
    try:
        # What torch.load tries first; it raises unless a first member header is valid.
        with tarfile.open(path, mode="r:"):
            return True
    except READ_ERRORS:
        return False


def _scan_legacy_stream(view: MappedWindow) -> FormatReport:
    sequence = _Sequence(None)
    position: int | None = 0
    for role in _LEGACY_PICKLES:
        assert position is not None
        start = position
        position = sequence.scan(view, start, role, raw=False)
        if position is None:
            break
        if role == "magic number" and _small_int(view, start, position) != MAGIC_NUMBER:
            sequence.stop(
                "the first pickle is not PyTorch's magic number, so torch.load stops after "
                "unpickling it", start, "torch-legacy-magic",
            )
            break
        if role == "protocol version" and _small_int(view, start, position) != PROTOCOL_VERSION:
            sequence.stop(
                "the second pickle is not PyTorch's protocol version 1001, so torch.load stops "
                "after unpickling it", start, "torch-legacy-protocol",
            )
            break
    embedded = sequence.embedded(view.size)
    return FormatReport(
        "pytorch-legacy", tuple(sequence.issues), (embedded,) if embedded else (), 0
    )


def _scan_legacy_tar(path: Path, view: MappedWindow, scan_member: MemberScanner) -> FormatReport:
    listing = list_tar(path, mode="r:")
    issues = list(listing.issues)
    pickles: list[EmbeddedPickle] = []
    # tarfile.getmember, which torch's tar.extract uses: the last member of exactly that name.
    read = {m.name: m for m in listing.members if m.name in _TAR_MEMBERS}
    for required in _TAR_MEMBERS:
        if required not in read:
            issues.append(
                issue(
                    "MLA107", "torch-tar-missing-member", "Legacy tar checkpoint incomplete",
                    f"the tar checkpoint has no {required!r} member, so torch.load fails "
                    "while reading it (after unpickling the members before it)",
                    Severity.MEDIUM, member=required,
                )
            )
    for member in read.values():
        if not member.isreg() or member.sparse is not None:
            issues.append(
                issue(
                    "MLA107", "torch-tar-irregular", "Legacy tar member is not a file",
                    f"tar member {member.name!r} is not a regular file; torch.load would "
                    "extract it and read whatever it points to", Severity.HIGH,
                    member=member.name,
                )
            )
            continue
        window = view.window(member.offset_data, member.offset_data + member.size)
        if member.name == "pickle":
            found, embedded = embedded_scan(window, member.name)
            issues.extend(found)
            pickles.append(embedded)
            continue
        sequence = _Sequence(member.name)
        if member.name == "storages":
            _walk_storages(window, sequence)
        else:
            _walk_tensors(window, sequence)
        issues.extend(sequence.issues)
        embedded_seq = sequence.embedded(window.size)
        if embedded_seq is not None:
            pickles.append(embedded_seq)
    rest = [m for m in listing.members if read.get(m.name) is not m]
    report = FormatReport("pytorch-legacy-tar", tuple(issues), tuple(pickles), len(listing.members))
    return report.merged(tar_members_by_content(path, rest, scan_member, mode="r:"))


def _count(sequence: _Sequence, view: MappedWindow, role: str) -> tuple[int, int] | None:
    """Scan the count pickle at the start of a member: (count, next position) or None."""
    end = sequence.scan(view, 0, role, raw=True)
    if end is None:
        return None
    count = _small_int(view, 0, end)
    if count is None or count < 0:
        _unfollowable(sequence, f"the {role} pickle is not a plain integer", 0)
        return None
    return count, end


def _unfollowable(sequence: _Sequence, why: str, offset: int) -> None:
    sequence.issues.append(
        issue(
            "MLA101", "unscannable-pickle", "Pickles that cannot be located",
            f"in {sequence.member!r}, {why}: the pickles torch.load reads after this point "
            "cannot be found without running the file, so they were not checked",
            Severity.HIGH, member=sequence.member, pointer=f"offset {offset}",
        )
    )
    sequence.broken = True


def _int_at(view: MappedWindow, position: int, fmt: str) -> int | None:
    view.seek(position)
    size = struct.calcsize(fmt)
    data = view.read(size)
    if len(data) < size:
        return None
    value: int = struct.unpack(fmt, data)[0]
    return value


def _walk_storages(view: MappedWindow, sequence: _Sequence) -> None:
    counted = _count(sequence, view, "storage count")
    if counted is None:
        return
    count, position = counted
    for index in range(count):
        start = position
        end = sequence.scan(view, start, f"storage {index}", raw=True)
        if end is None:
            return
        element = _storage_element_size(sequence.scans[-1])
        numel = _int_at(view, end, "<q")
        if element is None or numel is None or numel < 0:
            _unfollowable(sequence, f"the raw data of storage {index} has no readable size", end)
            return
        position = end + 8 + numel * element
        if position > view.size:
            _unfollowable(sequence, f"storage {index} runs past the end of the member", end)
            return
    sequence.scan(view, position, "storage views", raw=True)


def _storage_element_size(scan: PickleScan) -> int | None:
    sizes = {
        _STORAGE_SIZES[found.name.rsplit(".", 1)[-1]]
        for found in scan.imports
        if found.name.rsplit(".", 1)[-1] in _STORAGE_SIZES
    }
    return sizes.pop() if len(sizes) == 1 else None


def _walk_tensors(view: MappedWindow, sequence: _Sequence) -> None:
    counted = _count(sequence, view, "tensor count")
    if counted is None:
        return
    count, position = counted
    for index in range(count):
        end = sequence.scan(view, position, f"tensor {index}", raw=True)
        if end is None:
            return
        ndim = _int_at(view, end, "<i")
        if ndim is None or ndim < 0:
            _unfollowable(sequence, f"tensor {index} has no readable dimension count", end)
            return
        position = end + 8 + 16 * ndim + 8
        if position > view.size:
            _unfollowable(sequence, f"tensor {index} runs past the end of the member", end)
            return
