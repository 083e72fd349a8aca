"""Static checks of zip and tar containers, bounded access to their members, and the scan of
every member by content.

Nothing is extracted to the real file system and nothing is loaded. :func:`inspect_zip` reads
the central directory, every local header and (for compressed members) the compressed
stream itself, under the caps of :mod:`mlaudit.scanners.format_report`; :func:`inspect_tar`
walks the tar headers with :mod:`tarfile` and never calls ``extract``/``extractall``.

The scan is a sound over-approximation of every real reader: :func:`scan_zip_archive` and
:func:`scan_tar_archive` copy each member (under the caps) into a private temporary file and
hand it to a :data:`MemberScanner` that sniffs it by content, never by name, and scans it as
what it is, nested archives included, down to :data:`MAX_NESTING` levels. Names are compared
the way the readers compare them (a case-insensitive file system, torch's case-insensitive
lookup), so names that collide once normalised or case-folded are findings. A zip member
whose general-purpose flags say encrypted or patched (bits 0x1, 0x20, 0x40) is refused by
every real reader (zipfile, numpy and torch's miniz reader check the central directory's
flags); it is still scanned when its bytes decode without a password, and otherwise noted.

The format scanners (PyTorch, NumPy ``.npz``) reuse the same reading through
:func:`open_zip` and :func:`member_view`: a stored member is read in place through a window on
a read-only memory map of the archive, a compressed member is first streamed into a temporary
file under a hard cap (:func:`materialize`), so memory stays bounded whatever the archive
claims.

Public functions never raise for what a file contains; every problem becomes an
:class:`~mlaudit.scanners.format_report.ArtifactIssue`. They raise :class:`OSError` only when the
path itself cannot be opened or read.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import io
import itertools
import lzma
import mmap
import os
import posixpath
import re
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.scanners.folders import prefixed_report
from mlaudit.scanners.format_report import (
    MAX_ARCHIVE_MEMBERS,
    MAX_COMPRESSION_RATIO,
    MAX_DECOMPRESSED_BYTES,
    ArtifactIssue,
    EmbeddedPickle,
    FormatReport,
)
from mlaudit.scanners.pickle import MalformedPickle, PickleScan, scan_stream

__all__ = [
    "MAX_NESTING",
    "READ_ERRORS",
    "MappedWindow",
    "MemberScanner",
    "MemberUnreadable",
    "OpenZip",
    "SizeCapExceeded",
    "TarListing",
    "ZipEntry",
    "bomb_issue",
    "decompression_cap",
    "duplicate_issues",
    "embedded_scan",
    "encoded_name",
    "inspect_tar",
    "inspect_zip",
    "issue",
    "list_tar",
    "mapped_file",
    "materialize",
    "materialized_member",
    "member_view",
    "members_scope",
    "open_zip",
    "path_issues",
    "scan_extracted",
    "scan_tar_archive",
    "scan_zip_archive",
    "tar_members_by_content",
    "too_many_members",
    "zip_members_by_content",
]

# Scans one file taken out of an archive, by content: the inventory's report_for_member. None
# for a file that is no model format at all (a README, a CSV).
MemberScanner = Callable[[Path], FormatReport | None]

# Archives inside archives are scanned member by member down to this many levels.
MAX_NESTING: Final = 4

MIB: Final = 1024**2
_CHUNK: Final = MIB
_LOCAL_HEADER: Final = struct.Struct("<4s2B4HL2L2H")
_LOCAL_MAGIC: Final = b"PK\x03\x04"
_EOCD_MAGIC: Final = b"PK\x05\x06"
_EOCD64_LOCATOR_MAGIC: Final = b"PK\x06\x07"
_EOCD64_MAGIC: Final = b"PK\x06\x06"
_ZIP64_LIMIT: Final = 0xFFFFFFFF
_FLAG_ENCRYPTED: Final = 0x1
_FLAG_DATA_DESCRIPTOR: Final = 0x8
# Encrypted, compressed patched data, strong encryption: zipfile, numpy and torch's miniz
# reader all refuse a member whose central-directory record has one of these bits.
_FLAGS_REFUSED: Final = 0x1 | 0x20 | 0x40
_FLAG_UTF8: Final = 0x800
_DRIVE: Final = re.compile(r"^[A-Za-z]:")

# What reading a damaged or hostile archive can raise, from zipfile, tarfile, the stdlib
# decompressors and the file system. Callers turn these into issues.
READ_ERRORS: Final[tuple[type[BaseException], ...]] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    zlib.error,
    lzma.LZMAError,
    KeyError,
    IndexError,
    OverflowError,
)

# ============================================================================================
# Issues


def issue(
    rule_id: str,
    kind: str,
    title: str,
    message: str,
    severity: Severity,
    *,
    member: str | None = None,
    pointer: str | None = None,
    evidence: dict[str, JsonValue] | None = None,
) -> ArtifactIssue:
    """An issue whose key is ``kind`` plus the member it concerns: stable, never an offset."""
    key = f"{kind}:{member}" if member is not None else kind
    return ArtifactIssue(
        rule_id=rule_id,
        key=key,
        title=title,
        message=message,
        severity=severity,
        member=member,
        pointer=pointer,
        evidence=evidence or {},
    )


def bomb_issue(member: str | None, message: str, evidence: dict[str, JsonValue]) -> ArtifactIssue:
    return issue(
        "MLA103", "decompression-bomb", "Decompression bomb", message, Severity.CRITICAL,
        member=member, evidence=evidence,
    )


def decompression_cap(compressed_size: int) -> int:
    """How many bytes a stream of ``compressed_size`` bytes may decompress to."""
    by_ratio = int(MAX_COMPRESSION_RATIO * max(compressed_size, 0)) + MIB
    return min(MAX_DECOMPRESSED_BYTES, by_ratio)


def path_issues(name: str, member: str) -> list[ArtifactIssue]:
    """Absolute names and names that climb out of the extraction folder."""
    found = []
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        found.append(
            issue(
                "MLA103", "absolute-path", "Absolute path in archive",
                f"member {name!r} has an absolute path: extracting the archive writes it "
                "wherever it names, outside the extraction folder",
                Severity.CRITICAL, member=member,
            )
        )
    if ".." in re.split(r"[/\\]", name):
        found.append(
            issue(
                "MLA103", "path-traversal", "Path traversal in archive",
                f"member {name!r} climbs out of the extraction folder with '..': extracting "
                "the archive writes outside it",
                Severity.CRITICAL, member=member,
            )
        )
    return found


def _normalized(name: str) -> str:
    cleaned = posixpath.normpath(name.replace("\\", "/"))
    return cleaned.lstrip("/") if cleaned not in (".", "/") else cleaned


def duplicate_issues(names: list[str], what: str) -> list[ArtifactIssue]:
    """One issue per name that several members share, exactly or once normalised
    (``duplicate-member``), and one per set of names that differ only in case
    (``case-collision``).

    Case matters to readers: PyTorch's reader looks records up case-insensitively, and
    extracting onto a case-insensitive file system (Windows, macOS) keeps one of the files.
    """
    exact: dict[str, list[str]] = {}
    for name in names:
        exact.setdefault(_normalized(name), []).append(name)
    folded: dict[str, list[str]] = {}
    for normalized, group in exact.items():
        folded.setdefault(normalized.casefold(), []).append(group[0])
    found = []
    for group in exact.values():
        if len(group) < 2:
            continue
        found.append(
            issue(
                "MLA103", "duplicate-member", "Duplicate member names",
                f"{len(group)} {what} members are named {group[0]!r}: tools disagree on which "
                "one wins (zipfile, numpy and tarfile read the last, PyTorch's reader picks "
                "one by its directory order), so the member one tool inspected may not be "
                "the one another loads",
                Severity.HIGH, member=group[0],
                evidence={"names": list(dict.fromkeys(group)), "count": len(group)},
            )
        )
    for group in folded.values():
        if len(group) < 2:
            continue
        found.append(
            issue(
                "MLA103", "case-collision", "Member names that differ only in case",
                f"{what} members {', '.join(repr(name) for name in group)} differ only in "
                "case: PyTorch's reader finds records case-insensitively and a "
                "case-insensitive file system keeps one of them, so the member one tool "
                "inspected may not be the one another loads",
                Severity.HIGH, member=group[0], evidence={"names": list(group)},
            )
        )
    return found


def too_many_members(count: int) -> ArtifactIssue:
    return issue(
        "MLA103", "too-many-members", "Too many archive members",
        f"the archive has {count} members, more than the {MAX_ARCHIVE_MEMBERS} any model "
        "needs; it was not inspected further",
        Severity.HIGH, evidence={"members": count, "limit": MAX_ARCHIVE_MEMBERS},
    )


# ============================================================================================
# Bounded member access


class SizeCapExceeded(Exception):
    """A member or stream produced more bytes than its cap allows; nothing past it was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class MemberUnreadable(Exception):
    """A member could not be read; ``issue`` says why, for the caller to report."""

    def __init__(self, found: ArtifactIssue) -> None:
        super().__init__(found.message)
        self.issue = found


def materialize(open_member: Callable[[], IO[bytes]], limit: int, directory: Path) -> Path:
    """Stream a member into a new file in ``directory`` (a temporary folder the caller owns).

    At most ``limit`` bytes are written: one more raises :class:`SizeCapExceeded` and the
    partial file is removed. Errors of the underlying reader (see :data:`READ_ERRORS`) pass
    through; the partial file is kept so that what was read before the error can be scanned
    (a loader would have acted on those bytes too).
    """
    descriptor, name = tempfile.mkstemp(dir=directory, prefix="member-", suffix=".bin")
    target = Path(name)
    written = 0
    with os.fdopen(descriptor, "wb") as sink, open_member() as source:
        while True:
            chunk = source.read(min(_CHUNK, limit - written + 1))
            if not chunk:
                return target
            written += len(chunk)
            if written > limit:
                sink.close()
                target.unlink(missing_ok=True)
                raise SizeCapExceeded(limit)
            sink.write(chunk)


class MappedWindow(io.RawIOBase):
    """A read-only, seekable view of ``[start, end)`` of a memory map (or bytes).

    The pickle walker reads through it as through a file, so a member stored inside an
    archive is scanned in place, without a copy.
    """

    def __init__(self, data: mmap.mmap | bytes, start: int = 0, end: int | None = None) -> None:
        super().__init__()
        limit = len(data)
        self._data = data
        self._start = min(max(start, 0), limit)
        self._end = limit if end is None else min(max(end, self._start), limit)
        self._pos = self._start

    @property
    def size(self) -> int:
        return self._end - self._start

    def window(self, start: int, end: int | None = None) -> MappedWindow:
        """A sub-window, ``start``/``end`` relative to this one."""
        stop = self._end if end is None else self._start + end
        return MappedWindow(self._data, self._start + start, min(stop, self._end))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos - self._start

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: self._start, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}
        position = base[whence] + offset
        if position < self._start:
            raise OSError("seek before the start of the window")
        self._pos = position
        return self._pos - self._start

    def read(self, size: int | None = -1) -> bytes:
        if self._pos >= self._end:
            return b""
        stop = self._end if size is None or size < 0 else min(self._end, self._pos + size)
        chunk = bytes(self._data[self._pos : stop])
        self._pos = stop
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def readline(self, size: int | None = -1) -> bytes:
        if self._pos >= self._end:
            return b""
        newline = self._data.find(b"\n", self._pos, self._end)
        stop = self._end if newline < 0 else newline + 1
        if size is not None and size >= 0:
            stop = min(stop, self._pos + size)
        chunk = bytes(self._data[self._pos : stop])
        self._pos = stop
        return chunk


@contextlib.contextmanager
def mapped_file(path: Path) -> Iterator[MappedWindow]:
    """A window on the whole file through a read-only memory map (empty files: no map)."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            yield MappedWindow(b"")
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield MappedWindow(mapped)


def _shifted(scan: PickleScan, offset: int, pickle_index: int | None) -> PickleScan:
    imports = tuple(
        dataclasses.replace(
            found,
            offset=found.offset + offset,
            pickle_index=found.pickle_index if pickle_index is None else pickle_index,
        )
        for found in scan.imports
    )
    problems = tuple(
        dataclasses.replace(problem, offset=problem.offset + offset) for problem in scan.problems
    )
    return dataclasses.replace(scan, imports=imports, problems=problems)


def embedded_scan(
    view: MappedWindow,
    member: str | None,
    *,
    offset: int = 0,
    pickle_index: int | None = None,
    label: str | None = None,
) -> tuple[list[ArtifactIssue], EmbeddedPickle]:
    """Scan the pickle(s) in ``view``; a malformed pickle is an MLA101 issue, not an error.

    Offsets are reported relative to the member, plus ``offset``; ``label`` names the pickle
    in messages (default: the member). When the pickle is
    malformed the embedded scan still carries the imports met before the break: a loader
    runs those before it fails.
    """
    where = label or member
    try:
        view.seek(0)
        scan = scan_stream(view, view.size)  # type: ignore[arg-type]
    except MalformedPickle as error:
        before = tuple(
            dataclasses.replace(found, pickle_index=pickle_index or found.pickle_index)
            for found in error.imports_before
        )
        partial = PickleScan(before, (), 0, 0, 0, view.size)
        found_issue = issue(
            "MLA101", "malformed-pickle", "Pickle that cannot be parsed",
            f"the pickle{' in ' + where if where else ''} cannot be parsed ({error}); a loader "
            "runs every opcode before the point where it breaks, so it cannot be vouched for",
            Severity.HIGH, member=member, pointer=f"offset {error.offset + offset}",
            evidence={"imports_before": [found.qualified_name for found in before]},
        )
        return [found_issue], EmbeddedPickle(member, _shifted(partial, offset, pickle_index))
    return [], EmbeddedPickle(member, _shifted(scan, offset, pickle_index))


# ============================================================================================
# Zip


@dataclass
class ZipEntry:
    """One central-directory record, with where its data starts (None: unreadable header)."""

    index: int
    name: str
    raw_name: str
    compress_type: int
    compress_size: int
    file_size: int
    crc: int
    flag_bits: int
    header_offset: int
    external_attr: int
    data_offset: int | None = None
    info: object = None  # the zipfile.ZipInfo, for zipfile-based decompression
    # A refused member (see ``refused``) whose bytes are plain all the same: scanned anyway.
    in_clear: bool = False

    @property
    def encrypted(self) -> bool:
        return bool(self.flag_bits & _FLAG_ENCRYPTED)

    @property
    def refused(self) -> bool:
        """Flagged encrypted or patched: every real reader refuses to open the member."""
        return bool(self.flag_bits & _FLAGS_REFUSED)

    @property
    def sealed(self) -> bool:
        """Refused, and its bytes do not decode without a password: nothing can read it."""
        return self.refused and not self.in_clear

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


@dataclass
class OpenZip:
    """An archive opened for inspection: its entries, issues found so far, and its bytes."""

    path: Path
    size: int
    view: MappedWindow
    entries: list[ZipEntry] = field(default_factory=list)
    issues: list[ArtifactIssue] = field(default_factory=list)
    archive: object = None  # zipfile.ZipFile, None when the directory is unreadable
    directory: Path | None = None  # temporary folder for materialised members
    # False: compressed members' streams are checked as zip_members_by_content copies them.
    streams_checked: bool = True

    @property
    def readable(self) -> bool:
        return self.archive is not None


def _declared_entry_count(view: MappedWindow) -> int | None:
    """The member count the end-of-central-directory record declares (zip64 aware)."""
    size = view.size
    tail_start = max(0, size - (65535 + 22))
    view.seek(tail_start)
    tail = view.read()
    at = tail.rfind(_EOCD_MAGIC)
    if at < 0 or len(tail) - at < 22:
        return None
    (count,) = struct.unpack_from("<H", tail, at + 10)
    if count != 0xFFFF:
        return int(count)
    locator = at - 20
    if locator < 0 or tail[locator : locator + 4] != _EOCD64_LOCATOR_MAGIC:
        return int(count)
    (eocd64,) = struct.unpack_from("<Q", tail, locator + 8)
    view.seek(eocd64)
    record = view.read(56)
    if len(record) < 56 or record[:4] != _EOCD64_MAGIC:
        return int(count)
    (total,) = struct.unpack_from("<Q", record, 32)
    return int(total)


@contextlib.contextmanager
def open_zip(path: Path, *, check_streams: bool = True) -> Iterator[OpenZip]:
    """Open ``path`` for inspection and run the MLA103 checks on its directory and headers.

    With ``check_streams`` False, compressed members are not decompressed here: the caller
    copies every one out with :func:`zip_members_by_content`, which checks each stream as it
    goes, so each is decompressed once. Raises :class:`OSError` only if ``path`` cannot be
    opened; an unreadable archive is an MLA107 issue and ``readable`` is False.
    """
    with (
        mapped_file(path) as view,
        path.open("rb") as handle,
        tempfile.TemporaryDirectory(prefix="mlaudit-") as temporary,
    ):
        opened = OpenZip(
            path, view.size, view, directory=Path(temporary), streams_checked=check_streams
        )
        declared = _declared_entry_count(view)
        if declared is not None and declared > MAX_ARCHIVE_MEMBERS:
            opened.issues.append(too_many_members(declared))
            yield opened
            return
        try:
            archive = zipfile.ZipFile(handle)
        except READ_ERRORS as error:
            opened.issues.append(
                issue(
                    "MLA107", "unreadable-zip", "Zip archive that cannot be read",
                    f"the zip directory cannot be read ({type(error).__name__}: {error}); its "
                    "members could not be checked",
                    Severity.HIGH,
                )
            )
            yield opened
            return
        with archive:
            opened.archive = archive
            _collect_entries(opened, archive.infolist())
            yield opened


def _collect_entries(opened: OpenZip, infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        opened.issues.append(too_many_members(len(infos)))
        opened.archive = None
        return
    for index, info in enumerate(infos):
        entry = ZipEntry(
            index=index,
            name=info.filename,
            raw_name=info.orig_filename,
            compress_type=info.compress_type,
            compress_size=info.compress_size,
            file_size=info.file_size,
            crc=info.CRC,
            flag_bits=info.flag_bits,
            header_offset=info.header_offset,
            external_attr=info.external_attr,
            info=info,
        )
        opened.entries.append(entry)
        opened.issues.extend(_entry_issues(opened, entry))
    opened.issues.extend(duplicate_issues([entry.name for entry in opened.entries], "zip"))
    opened.issues.extend(_layout_issues(opened))
    total = sum(entry.file_size for entry in opened.entries)
    if total > MAX_DECOMPRESSED_BYTES:
        opened.issues.append(
            bomb_issue(
                None,
                f"the members declare {total} bytes in all, more than the "
                f"{MAX_DECOMPRESSED_BYTES} mlaudit allows",
                {"declared_bytes": total, "limit": MAX_DECOMPRESSED_BYTES},
            )
        )
    for entry in opened.entries:
        if opened.streams_checked or not _checked_when_copied(entry):
            opened.issues.extend(_content_issues(opened, entry))


def _checked_when_copied(entry: ZipEntry) -> bool:
    """Members whose stream checks zip_members_by_content makes as it copies them out."""
    return not entry.refused and entry.compress_type in _DECOMPRESSED


def _entry_issues(opened: OpenZip, entry: ZipEntry) -> list[ArtifactIssue]:
    name = entry.name
    found = path_issues(name, name)
    if "\x00" in entry.raw_name:
        found.append(
            issue(
                "MLA103", "nul-in-name", "NUL byte in a member name",
                f"member name {entry.raw_name!r} contains a NUL byte: some tools cut the name "
                "there and others do not, so they see different members",
                Severity.HIGH, member=name,
            )
        )
    mode = entry.external_attr >> 16
    if stat.S_ISLNK(mode):
        found.append(
            issue(
                "MLA103", "symlink", "Symbolic link in archive",
                f"member {name!r} is a symbolic link: extractors that restore links (unzip, "
                "bsdtar) then write later members through it, outside the extraction folder",
                Severity.CRITICAL, member=name,
            )
        )
    elif mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)):
        found.append(
            issue(
                "MLA103", "device-member", "Device or FIFO in archive",
                f"member {name!r} is a device file or FIFO, which no model needs",
                Severity.HIGH, member=name,
            )
        )
    if entry.file_size > MAX_DECOMPRESSED_BYTES:
        found.append(
            bomb_issue(
                name,
                f"member {name!r} declares {entry.file_size} bytes, more than the "
                f"{MAX_DECOMPRESSED_BYTES} mlaudit allows",
                {"declared_bytes": entry.file_size, "limit": MAX_DECOMPRESSED_BYTES},
            )
        )
    elif entry.compress_type != 0 and entry.file_size > decompression_cap(entry.compress_size):
        ratio = entry.file_size / max(entry.compress_size, 1)
        found.append(
            bomb_issue(
                name,
                f"member {name!r} declares {entry.file_size} bytes from "
                f"{entry.compress_size} compressed (ratio {ratio:.0f}, limit "
                f"{MAX_COMPRESSION_RATIO:.0f})",
                {
                    "declared_bytes": entry.file_size,
                    "compressed_bytes": entry.compress_size,
                    "ratio": round(ratio, 1),
                    "limit_ratio": MAX_COMPRESSION_RATIO,
                },
            )
        )
    # An encrypted member's data starts with the cipher's own header (12 bytes for ZipCrypto),
    # so its sizes differ by design; whether it decodes is judged from its content.
    if entry.compress_type == 0 and entry.compress_size != entry.file_size and not entry.refused:
        found.append(_size_mismatch(name, entry.file_size, entry.compress_size, "stored"))
    found.extend(_local_header_issues(opened, entry))
    return found


def _size_mismatch(name: str, declared: int, actual: int, how: str) -> ArtifactIssue:
    return issue(
        "MLA103", "size-mismatch", "Member size disagrees with its content",
        f"member {name!r} declares {declared} bytes but its {how} content is {actual} bytes: "
        "tools that trust the declared size and tools that read the stream see different data",
        Severity.HIGH, member=name, evidence={"declared_bytes": declared, "actual_bytes": actual},
    )


def encoded_name(entry: ZipEntry) -> bytes:
    """The member's name as the bytes its headers hold (what miniz and other C readers compare)."""
    encoding = "utf-8" if entry.flag_bits & _FLAG_UTF8 else "cp437"
    try:
        return entry.raw_name.encode(encoding)
    except UnicodeEncodeError:
        return entry.raw_name.encode("utf-8", "surrogateescape")


def _local_header_issues(opened: OpenZip, entry: ZipEntry) -> list[ArtifactIssue]:
    name = entry.name
    view = opened.view
    header = b""
    if 0 <= entry.header_offset < opened.size:
        view.seek(entry.header_offset)
        header = view.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_MAGIC:
        return [
            issue(
                "MLA107", "bad-local-header", "Member without a valid local header",
                f"the central directory places member {name!r} at offset "
                f"{entry.header_offset}, where there is no local file header",
                Severity.HIGH, member=name, pointer=f"offset {entry.header_offset}",
            )
        ]
    (_, _, _, flags, method, _, _, crc, csize, usize, name_length, extra_length) = (
        _LOCAL_HEADER.unpack(header)
    )
    local_name = view.read(name_length)
    entry.data_offset = entry.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    differences: dict[str, JsonValue] = {}
    if local_name != encoded_name(entry):
        differences["name"] = local_name.decode("utf-8", "replace")
    if method != entry.compress_type:
        differences["compression"] = method
    if (flags ^ entry.flag_bits) & _FLAGS_REFUSED:
        differences["flags"] = flags
    if not flags & _FLAG_DATA_DESCRIPTOR:
        if crc not in (entry.crc, 0):
            differences["crc"] = crc
        for label, local, central in (
            ("compressed_size", csize, entry.compress_size),
            ("size", usize, entry.file_size),
        ):
            if local not in (central, _ZIP64_LIMIT):
                differences[label] = local
    found = []
    if differences:
        found.append(
            issue(
                "MLA103", "local-header-mismatch", "Local header disagrees with the directory",
                f"the local header of member {name!r} disagrees with the central directory "
                f"({', '.join(differences)}): streaming readers and directory readers see "
                "different members",
                Severity.HIGH, member=name, pointer=f"offset {entry.header_offset}",
                evidence={"local": differences},
            )
        )
    if entry.data_offset + entry.compress_size > opened.size:
        found.append(
            issue(
                "MLA107", "truncated-member", "Member runs past the end of the archive",
                f"member {name!r} declares {entry.compress_size} bytes of data that the file "
                "does not hold",
                Severity.HIGH, member=name, pointer=f"offset {entry.header_offset}",
            )
        )
        entry.data_offset = None
    return found


def _layout_issues(opened: OpenZip) -> list[ArtifactIssue]:
    """Members whose data overlaps another's (the overlapping-entries zip bomb), and bytes
    before the first member (a file that is also something else)."""
    placed = sorted(
        (entry for entry in opened.entries if entry.data_offset is not None),
        key=lambda entry: (entry.header_offset, entry.index),
    )
    found = []
    flagged: set[str] = set()
    for previous, current in itertools.pairwise(placed):
        assert previous.data_offset is not None
        end = previous.data_offset + previous.compress_size
        if end > current.header_offset and current.name not in flagged:
            flagged.add(current.name)
            found.append(
                issue(
                    "MLA103", "overlapping-members", "Members that overlap",
                    f"member {current.name!r} starts inside the data of {previous.name!r}: "
                    "overlapping members are how small zip files decompress to huge sizes, and "
                    "how one stream is shown under two names",
                    Severity.CRITICAL, member=current.name,
                    pointer=f"offset {current.header_offset}",
                    evidence={"overlaps": previous.name},
                )
            )
    if placed and placed[0].header_offset > 0:
        found.append(
            issue(
                "MLA107", "prepended-data", "Data before the first zip member",
                f"{placed[0].header_offset} bytes precede the first member: the file may also "
                "be read as another format (numpy.load unpickles a file that does not start "
                "with a zip or .npy signature)",
                Severity.MEDIUM, evidence={"bytes": placed[0].header_offset},
            )
        )
    return found


def _content_issues(opened: OpenZip, entry: ZipEntry) -> list[ArtifactIssue]:
    """Decompress a compressed member (counting, not keeping) and compare with its header."""
    if entry.refused:
        return [_refused_issue(opened, entry)]
    if entry.compress_type == 0 or entry.data_offset is None:
        return []
    if entry.file_size > decompression_cap(entry.compress_size):
        return []  # already a bomb; not decompressed
    name = entry.name
    try:
        produced, crc, complete = _decompressed_size(opened, entry)
    except _Unsupported:
        return [_unsupported_issue(entry)]
    except READ_ERRORS as error:
        return [
            issue(
                "MLA107", "corrupt-member", "Member that does not decompress",
                f"member {name!r} does not decompress ({type(error).__name__}: {error})",
                Severity.HIGH, member=name,
            )
        ]
    return _stream_issues(entry, produced, crc, complete)


def _unsupported_issue(entry: ZipEntry) -> ArtifactIssue:
    return issue(
        "MLA107", "unsupported-compression", "Member compressed with an unknown method",
        f"member {entry.name!r} uses compression method {entry.compress_type}, which mlaudit "
        "cannot read, so its content is not scanned; a reader that supports the method "
        "(Python 3.14's zipfile reads Zstandard) would load it",
        Severity.HIGH, member=entry.name, evidence={"method": entry.compress_type},
    )


def _stream_issues(
    entry: ZipEntry, produced: int, crc: int | None, complete: bool
) -> list[ArtifactIssue]:
    """Compare what a compressed member decompressed to with what its header declares."""
    name = entry.name
    if produced != entry.file_size or not complete:
        how = "decompressed" if complete else "truncated compressed"
        return [_size_mismatch(name, entry.file_size, produced, how)]
    if crc is not None and crc != entry.crc:
        return [
            issue(
                "MLA103", "crc-mismatch", "Member checksum disagrees with its content",
                f"member {name!r} decompresses to data whose CRC-32 is not the one declared",
                Severity.HIGH, member=name,
                evidence={"declared_crc": entry.crc, "actual_crc": crc},
            )
        ]
    return []


def _refused_issue(opened: OpenZip, entry: ZipEntry) -> ArtifactIssue:
    """Whether a refused member is plain all the same (then it is scanned) or really sealed.

    Plain means: stored with equal sizes, or deflated, and the bytes have the declared size
    and CRC-32. Ciphertext never passes that check, and a real encrypted member is not a size
    lie: its data holds the cipher's header besides the content.
    """
    entry.in_clear = _decodes_in_clear(opened, entry)
    if not entry.in_clear:
        return _sealed_issue(entry)
    return issue(
        "MLA107", "flagged-in-clear", "Member flagged encrypted but stored in the clear",
        f"member {entry.name!r} is flagged encrypted or patched, so zipfile, numpy and PyTorch "
        "refuse to open it, but its bytes are plain; they were scanned all the same",
        Severity.LOW, member=entry.name, evidence={"flag_bits": entry.flag_bits},
    )


def _sealed_issue(entry: ZipEntry) -> ArtifactIssue:
    return issue(
        "MLA107", "encrypted-member", "Encrypted archive member (not scanned)",
        f"member {entry.name!r} is not scanned: it is encrypted, and no loader reads it "
        "without the password (zipfile, numpy and PyTorch's reader refuse flagged members)",
        Severity.LOW, member=entry.name, evidence={"flag_bits": entry.flag_bits},
    )


def _decodes_in_clear(opened: OpenZip, entry: ZipEntry) -> bool:
    if entry.data_offset is None or entry.file_size > decompression_cap(entry.compress_size):
        return False
    if entry.compress_type == 0:
        if entry.compress_size != entry.file_size:
            return False
        crc = 0
        with _raw_data(opened, entry) as raw:
            while chunk := raw.read(_CHUNK):
                crc = zlib.crc32(chunk, crc)
        return crc == entry.crc
    if entry.compress_type != zipfile.ZIP_DEFLATED:
        return False
    try:
        produced, inflated_crc, complete = _decompressed_size(opened, entry)
    except READ_ERRORS:
        return False
    return complete and produced == entry.file_size and inflated_crc == entry.crc


class _Unsupported(Exception):
    def __init__(self, method: int) -> None:
        super().__init__(method)
        self.method = method


class _FileRange(io.RawIOBase):
    """Bytes ``[start, end)`` of a file, read with ``pread``. Copying or inflating a member
    this way maps nothing, so memory stays flat however large the member is."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        super().__init__()
        self._descriptor = os.open(path, os.O_RDONLY)
        self._position = start
        self._end = end

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        left = self._end - self._position
        wanted = left if size is None or size < 0 else min(size, left)
        if wanted <= 0:
            return b""
        data = os.pread(self._descriptor, wanted, self._position)
        self._position += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._descriptor)
        super().close()


def _raw_data(opened: OpenZip, entry: ZipEntry) -> _FileRange:
    """A member's data as stored in the archive (compressed, or ciphertext)."""
    assert entry.data_offset is not None
    return _FileRange(opened.path, entry.data_offset, entry.data_offset + entry.compress_size)


class _Inflater(io.RawIOBase):
    """The raw deflate stream in ``raw``, inflated as it is read, whatever the member's flags
    say (so a member flagged encrypted but deflated in the clear can be read)."""

    def __init__(self, raw: _FileRange) -> None:
        super().__init__()
        self._raw = raw
        self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
        self._pending = b""

    @property
    def eof(self) -> bool:
        """Whether the deflate stream ended (rather than the data running out)."""
        return self._decompressor.eof

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        while not self._decompressor.eof:
            if not self._pending:
                self._pending = self._raw.read(_CHUNK)
                if not self._pending:
                    break
            out = self._decompressor.decompress(self._pending, max(size, 1))
            self._pending = self._decompressor.unconsumed_tail
            if out:
                return out
        return b""

    def readall(self) -> bytes:
        return b"".join(iter(lambda: self.read(_CHUNK), b""))

    def close(self) -> None:
        self._raw.close()
        super().close()


def _decompressed_size(opened: OpenZip, entry: ZipEntry) -> tuple[int, int | None, bool]:
    """(bytes produced up to declared size + 1, their CRC or None, whether the stream ended)."""
    limit = entry.file_size + 1
    if entry.compress_type == zipfile.ZIP_DEFLATED:
        with _Inflater(_raw_data(opened, entry)) as inflater:
            produced, crc = 0, 0
            while produced < limit and (out := inflater.read(min(_CHUNK, limit - produced))):
                produced += len(out)
                crc = zlib.crc32(out, crc)
            return produced, crc, inflater.eof
    if entry.compress_type not in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        raise _Unsupported(entry.compress_type)
    archive = opened.archive
    assert isinstance(archive, zipfile.ZipFile)
    assert isinstance(entry.info, zipfile.ZipInfo)
    produced = 0
    with archive.open(entry.info) as stream:  # zipfile checks the CRC at the end
        while chunk := stream.read(_CHUNK):
            produced += len(chunk)
    return produced, None, True


def _unreadable(name: str, why: str) -> MemberUnreadable:
    return MemberUnreadable(
        issue(
            "MLA107", "unreadable-member", "Member that cannot be read",
            f"member {name!r} {why}", Severity.HIGH, member=name,
        )
    )


def _opener(opened: OpenZip, entry: ZipEntry) -> Callable[[], IO[bytes]]:
    """How to stream a member's content; raises MemberUnreadable when nothing can."""
    name = entry.name
    if entry.sealed:
        raise MemberUnreadable(_sealed_issue(entry))
    if entry.data_offset is None:
        raise _unreadable(name, "has no readable data")
    if entry.compress_type == 0:
        return lambda: _raw_data(opened, entry)  # type: ignore[return-value]
    if entry.compress_type == zipfile.ZIP_DEFLATED:
        return lambda: _Inflater(_raw_data(opened, entry))  # type: ignore[return-value]
    if entry.compress_type not in _DECOMPRESSED:
        raise MemberUnreadable(_unsupported_issue(entry))
    archive = opened.archive
    info = entry.info
    if not isinstance(archive, zipfile.ZipFile) or not isinstance(info, zipfile.ZipInfo):
        raise _unreadable(name, "cannot be read")
    return lambda: archive.open(info)


class _Tally(io.RawIOBase):
    """Counts what is read through it (bytes and their CRC-32), so a member's stream is
    checked while it is copied out rather than decompressed a second time for the check."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self.source = source
        self.produced = 0
        self.crc = 0

    @property
    def complete(self) -> bool:
        """Whether the stream ended by itself (zipfile's own streams stop at the size)."""
        return bool(getattr(self.source, "eof", True))

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self.source.read(-1 if size is None else size)
        self.produced += len(data)
        self.crc = zlib.crc32(data, self.crc)
        return data

    def close(self) -> None:
        self.source.close()
        super().close()


def _copy_out(
    opened: OpenZip, entry: ZipEntry, *, check_stream: bool
) -> tuple[Path, list[ArtifactIssue]]:
    """The member copied into the archive's temporary folder, and (``check_stream``) how its
    stream compares with its header. Raises :class:`MemberUnreadable`."""
    name = entry.name
    open_member = _opener(opened, entry)
    tallies: list[_Tally] = []

    def tallied() -> IO[bytes]:
        tallies.append(_Tally(open_member()))
        return tallies[-1]  # type: ignore[return-value]

    stored = entry.compress_type == 0
    cap = entry.compress_size if stored else decompression_cap(entry.compress_size)
    assert opened.directory is not None
    try:
        path = materialize(tallied if check_stream else open_member, cap, opened.directory)
    except SizeCapExceeded as error:
        raise MemberUnreadable(
            bomb_issue(
                name,
                f"member {name!r} decompresses to more than {error.limit} bytes "
                f"(from {entry.compress_size} compressed); it was not scanned",
                {"compressed_bytes": entry.compress_size, "limit": error.limit},
            )
        ) from None
    except READ_ERRORS as error:
        raise MemberUnreadable(
            issue(
                "MLA107", "corrupt-member", "Member that does not decompress",
                f"member {name!r} does not decompress ({type(error).__name__}: {error})",
                Severity.HIGH, member=name,
            )
        ) from None
    if not tallies:
        return path, []
    [tally] = tallies
    crc = tally.crc if entry.compress_type == zipfile.ZIP_DEFLATED else None  # zipfile checks
    return path, _stream_issues(entry, tally.produced, crc, tally.complete)


@contextlib.contextmanager
def materialized_member(opened: OpenZip, entry: ZipEntry) -> Iterator[Path]:
    """One member's content in a temporary file of the archive's folder, removed afterwards.

    Stored members are copied, compressed ones decompressed under :func:`decompression_cap`.
    Raises :class:`MemberUnreadable`.
    """
    path, _ = _copy_out(opened, entry, check_stream=False)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def member_view(opened: OpenZip, entry: ZipEntry) -> Iterator[MappedWindow]:
    """A window on one member's content, by ZipEntry (so each duplicate is reachable).

    A stored member is read in place; a compressed one is materialised in the archive's
    temporary folder under :func:`decompression_cap`. Raises :class:`MemberUnreadable`.
    """
    if entry.compress_type == 0:
        _opener(opened, entry)  # raises for members that cannot be read
        assert entry.data_offset is not None
        yield opened.view.window(entry.data_offset, entry.data_offset + entry.compress_size)
        return
    with materialized_member(opened, entry) as path, mapped_file(path) as view:
        yield view


def inspect_zip(path: Path) -> FormatReport:
    """MLA103/MLA107 checks of a zip archive's directory, local headers and streams."""
    with open_zip(path) as opened:
        return FormatReport("zip", tuple(opened.issues), (), len(opened.entries))


def scan_zip_archive(path: Path, scan_member: MemberScanner) -> FormatReport:
    """:func:`inspect_zip`, then every member scanned by content with ``scan_member``."""
    with open_zip(path, check_streams=False) as opened:
        report = FormatReport("zip", tuple(opened.issues), (), len(opened.entries))
        if opened.readable:
            report = report.merged(zip_members_by_content(opened, opened.entries, scan_member))
        return report


def zip_members_by_content(
    opened: OpenZip, entries: Iterable[ZipEntry], scan_member: MemberScanner
) -> FormatReport:
    """Each of ``entries`` copied out under the caps and scanned by what its content is.

    Sealed members (encrypted, see :attr:`ZipEntry.sealed`) are skipped: open_zip noted them.
    """
    found: list[ArtifactIssue] = []
    report = FormatReport("")
    known = {(known.rule_id, known.key) for known in opened.issues}
    with members_scope() as too_deep:
        if too_deep is not None:
            return FormatReport("", (too_deep,))
        for entry in entries:
            if entry.is_dir or entry.sealed:
                continue
            check = not opened.streams_checked and _checked_when_copied(entry)
            try:
                path, checks = _copy_out(opened, entry, check_stream=check)
            except MemberUnreadable as error:
                if (error.issue.rule_id, error.issue.key) not in known:
                    found.append(error.issue)
                continue
            found.extend(checks)
            try:
                report = report.merged(scan_extracted(entry.name, path, scan_member))
            finally:
                path.unlink(missing_ok=True)
    return report.merged(FormatReport("", tuple(found)))


# ============================================================================================
# Members by content, nesting


_NESTING: contextvars.ContextVar[int] = contextvars.ContextVar("archive_nesting", default=0)


@contextlib.contextmanager
def members_scope() -> Iterator[ArtifactIssue | None]:
    """Enter the members of one archive: yields None, or the issue saying the archive lies
    more than :data:`MAX_NESTING` archives deep (its members are then not scanned)."""
    depth = _NESTING.get()
    token = _NESTING.set(depth + 1)
    try:
        if depth < MAX_NESTING:
            yield None
            return
        yield issue(
            "MLA103", "nesting-too-deep", "Archives nested too deep",
            f"this archive lies inside {depth} others, as deep as mlaudit opens archives; its "
            "members were not scanned, and code that unpacks that far loads what they hold",
            Severity.HIGH, evidence={"depth": depth, "limit": MAX_NESTING},
        )
    finally:
        _NESTING.reset(token)


def scan_extracted(name: str, path: Path, scan_member: MemberScanner) -> FormatReport:
    """The report of one extracted member, its findings placed under ``name``."""
    found = scan_member(path)
    return FormatReport("") if found is None else prefixed_report(found, name)


# ============================================================================================
# Tar


_TAR_COMPRESSED: Final = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


def _open_tar(handle: IO[bytes], mode: str) -> tarfile.TarFile:
    return tarfile.open(fileobj=handle, mode=mode)  # type: ignore[call-overload,no-any-return]


@dataclass
class TarListing:
    """The members tarfile reads from an archive, the issues found, and whether it opened."""

    members: list[tarfile.TarInfo] = field(default_factory=list)
    issues: list[ArtifactIssue] = field(default_factory=list)
    opened: bool = False


def list_tar(path: Path, mode: str = "r:*") -> TarListing:
    """Walk the tar headers of ``path`` with the MLA103 checks; never extracts anything."""
    listing = TarListing()
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        handle.seek(0)
        compressed = head.startswith(_TAR_COMPRESSED)
        cap = decompression_cap(size) if compressed else MAX_DECOMPRESSED_BYTES
        try:
            tar = _open_tar(handle, mode)
        except READ_ERRORS as error:
            listing.issues.append(
                issue(
                    "MLA107", "unreadable-tar", "Tar archive that cannot be read",
                    f"the tar archive cannot be read ({type(error).__name__}: {error})",
                    Severity.HIGH,
                )
            )
            return listing
        listing.opened = True
        with tar:
            _walk_tar(tar, listing, cap, compressed)
    listing.issues.extend(duplicate_issues([m.name for m in listing.members], "tar"))
    return listing


def _walk_tar(tar: tarfile.TarFile, listing: TarListing, cap: int, compressed: bool) -> None:
    total = 0
    while True:
        try:
            member = tar.next()
        except READ_ERRORS as error:
            listing.issues.append(
                issue(
                    "MLA107", "corrupt-tar", "Tar archive that cannot be read to its end",
                    f"reading the tar headers failed after {len(listing.members)} members "
                    f"({type(error).__name__}: {error})",
                    Severity.HIGH,
                )
            )
            return
        if member is None:
            return
        if len(listing.members) >= MAX_ARCHIVE_MEMBERS:
            listing.issues.append(too_many_members(len(listing.members) + 1))
            return
        listing.members.append(member)
        listing.issues.extend(_tar_member_issues(member))
        total += max(member.size, 0)
        if member.size > MAX_DECOMPRESSED_BYTES or total > MAX_DECOMPRESSED_BYTES:
            listing.issues.append(
                bomb_issue(
                    member.name,
                    f"the tar members declare {total} bytes up to {member.name!r}, more than "
                    f"the {MAX_DECOMPRESSED_BYTES} mlaudit allows",
                    {"declared_bytes": total, "limit": MAX_DECOMPRESSED_BYTES},
                )
            )
            return
        # Reading the next header of a compressed tar decompresses this member's data:
        # stop before that if it would take the stream past the cap.
        if compressed and max(tar.offset, member.offset_data + member.size) > cap:
            listing.issues.append(
                bomb_issue(
                    member.name,
                    f"the compressed tar stream expands past {cap} bytes by member "
                    f"{member.name!r} (ratio limit {MAX_COMPRESSION_RATIO:.0f}); it was not "
                    "read further",
                    {"limit": cap, "declared_bytes": member.size},
                )
            )
            return


def _tar_member_issues(member: tarfile.TarInfo) -> list[ArtifactIssue]:
    name = member.name
    found = path_issues(name, name)
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hardlink"
        target = member.linkname
        escapes = bool(path_issues(target, name)) or (
            member.issym()
            and _normalized(posixpath.join(posixpath.dirname(name), target)).startswith("..")
        )
        found.append(
            issue(
                "MLA103", kind, f"{kind.capitalize()} in archive",
                f"member {name!r} is a {kind} to {target!r}"
                + (", outside the extraction folder" if escapes else "")
                + ": extracting it lets later members, or the loader, read and write through it",
                Severity.CRITICAL, member=name, evidence={"target": target},
            )
        )
    elif member.ischr() or member.isblk() or member.isfifo():
        found.append(
            issue(
                "MLA103", "device-member", "Device or FIFO in archive",
                f"member {name!r} is a device file or FIFO, which no model needs",
                Severity.HIGH, member=name,
            )
        )
    return found


def inspect_tar(path: Path) -> FormatReport:
    """MLA103/MLA107 checks of a tar archive (plain or gzip/bz2/xz), without extracting."""
    listing = list_tar(path)
    return FormatReport("tar", tuple(listing.issues), (), len(listing.members))


def scan_tar_archive(path: Path, scan_member: MemberScanner) -> FormatReport:
    """:func:`inspect_tar`, then every regular member scanned by content with ``scan_member``."""
    listing = list_tar(path)
    report = FormatReport("tar", tuple(listing.issues), (), len(listing.members))
    return report.merged(tar_members_by_content(path, listing.members, scan_member))


def tar_members_by_content(
    path: Path, members: Iterable[tarfile.TarInfo], scan_member: MemberScanner, mode: str = "r:*"
) -> FormatReport:
    """The regular files among ``members`` (from :func:`list_tar`, so within its caps), each
    copied out and scanned by what its content is. Read in archive order, so a compressed
    tar is decompressed about once more."""
    regular = sorted((m for m in members if m.isreg()), key=lambda m: m.offset_data)
    report = FormatReport("")
    if not regular:
        return report
    found: list[ArtifactIssue] = []
    with (
        members_scope() as too_deep,
        path.open("rb") as handle,
        tempfile.TemporaryDirectory(prefix="mlaudit-") as temporary,
    ):
        if too_deep is not None:
            return FormatReport("", (too_deep,))
        try:
            tar = _open_tar(handle, mode)
        except READ_ERRORS:
            return report  # list_tar has reported it
        with tar:
            for member in regular:
                try:
                    extracted = materialize(
                        functools.partial(_tar_reader, tar, member), member.size, Path(temporary)
                    )
                except _EXTRACT_ERRORS as error:
                    found.append(
                        issue(
                            "MLA107", "unreadable-member", "Member that cannot be read",
                            f"tar member {member.name!r} cannot be read "
                            f"({type(error).__name__}: {error})",
                            Severity.HIGH, member=member.name,
                        )
                    )
                    continue
                try:
                    report = report.merged(scan_extracted(member.name, extracted, scan_member))
                finally:
                    extracted.unlink(missing_ok=True)
    return report.merged(FormatReport("", tuple(found)))


_DECOMPRESSED: Final = (zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_EXTRACT_ERRORS: Final[tuple[type[BaseException], ...]] = (*READ_ERRORS, SizeCapExceeded)


def _tar_reader(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    reader = tar.extractfile(member)
    if reader is None:
        raise tarfile.ReadError(f"{member.name!r} has no data")
    return reader
