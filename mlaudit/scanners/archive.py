"""Static checks of zip and tar containers, and bounded access to their members.

Nothing is extracted to the real file system and nothing is loaded. :func:`inspect_zip` reads
the central directory, every local header and (for compressed members) the compressed
stream itself, under the caps of :mod:`mlaudit.scanners.report`; :func:`inspect_tar` walks the
tar headers with :mod:`tarfile` and never calls ``extract``/``extractall``.

The format scanners (PyTorch, NumPy ``.npz``) reuse the same reading through
:func:`open_zip` and :func:`member_view`: a stored member is read in place through a window on
a read-only memory map of the archive, a compressed member is first streamed into a temporary
file under a hard cap (:func:`materialize`), so memory stays bounded whatever the archive
claims.

Public functions never raise for what a file contains; every problem becomes an
:class:`~mlaudit.scanners.report.ArtifactIssue`. They raise :class:`OSError` only when the path
itself cannot be opened or read.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from mlaudit.findings import JsonValue, Severity
from mlaudit.scanners.pickle import MalformedPickle, PickleScan, scan_stream
from mlaudit.scanners.report import (
    MAX_ARCHIVE_MEMBERS,
    MAX_COMPRESSION_RATIO,
    MAX_DECOMPRESSED_BYTES,
    ArtifactIssue,
    EmbeddedPickle,
    FormatReport,
)

__all__ = [
    "READ_ERRORS",
    "MappedWindow",
    "MemberUnreadable",
    "OpenZip",
    "SizeCapExceeded",
    "TarListing",
    "ZipEntry",
    "decompression_cap",
    "embedded_scan",
    "inspect_tar",
    "inspect_zip",
    "issue",
    "list_tar",
    "mapped_file",
    "materialize",
    "member_view",
    "open_zip",
]

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


def _bomb(member: str | None, message: str, evidence: dict[str, JsonValue]) -> ArtifactIssue:
    return issue(
        "MLA103", "decompression-bomb", "Decompression bomb", message, Severity.CRITICAL,
        member=member, evidence=evidence,
    )


def decompression_cap(compressed_size: int) -> int:
    """How many bytes a stream of ``compressed_size`` bytes may decompress to."""
    by_ratio = int(MAX_COMPRESSION_RATIO * max(compressed_size, 0)) + MIB
    return min(MAX_DECOMPRESSED_BYTES, by_ratio)


def _path_issues(name: str, member: str) -> list[ArtifactIssue]:
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


def _duplicate_issues(names: list[str], what: str) -> list[ArtifactIssue]:
    """One issue per name that several members share (exactly, or once normalised)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_normalized(name), []).append(name)
    found = []
    for group in groups.values():
        if len(group) < 2:
            continue
        first = group[0]
        found.append(
            issue(
                "MLA103", "duplicate-member", "Duplicate member names",
                f"{len(group)} {what} members are named {first!r}: tools disagree on which one "
                "wins (zipfile, numpy and tarfile read the last, PyTorch's reader the first), "
                "so the member one tool inspected may not be the one another loads",
                Severity.HIGH, member=first,
                evidence={"names": list(dict.fromkeys(group)), "count": len(group)},
            )
        )
    return found


def _too_many(count: int) -> ArtifactIssue:
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

    @property
    def encrypted(self) -> bool:
        return bool(self.flag_bits & _FLAG_ENCRYPTED)

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
def open_zip(path: Path) -> Iterator[OpenZip]:
    """Open ``path`` for inspection and run the MLA103 checks on its directory and headers.

    Raises :class:`OSError` only if ``path`` cannot be opened; an unreadable archive is an
    MLA107 issue and ``readable`` is False.
    """
    with (
        mapped_file(path) as view,
        path.open("rb") as handle,
        tempfile.TemporaryDirectory(prefix="mlaudit-") as temporary,
    ):
        opened = OpenZip(path, view.size, view, directory=Path(temporary))
        declared = _declared_entry_count(view)
        if declared is not None and declared > MAX_ARCHIVE_MEMBERS:
            opened.issues.append(_too_many(declared))
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
        opened.issues.append(_too_many(len(infos)))
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
    opened.issues.extend(_duplicate_issues([entry.name for entry in opened.entries], "zip"))
    opened.issues.extend(_layout_issues(opened))
    total = sum(entry.file_size for entry in opened.entries)
    if total > MAX_DECOMPRESSED_BYTES:
        opened.issues.append(
            _bomb(
                None,
                f"the members declare {total} bytes in all, more than the "
                f"{MAX_DECOMPRESSED_BYTES} mlaudit allows",
                {"declared_bytes": total, "limit": MAX_DECOMPRESSED_BYTES},
            )
        )
    for entry in opened.entries:
        opened.issues.extend(_content_issues(opened, entry))


def _entry_issues(opened: OpenZip, entry: ZipEntry) -> list[ArtifactIssue]:
    name = entry.name
    found = _path_issues(name, name)
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
    if entry.encrypted:
        found.append(
            issue(
                "MLA107", "encrypted-member", "Encrypted archive member",
                f"member {name!r} is encrypted, so its content cannot be checked",
                Severity.MEDIUM, member=name,
            )
        )
    if entry.file_size > MAX_DECOMPRESSED_BYTES:
        found.append(
            _bomb(
                name,
                f"member {name!r} declares {entry.file_size} bytes, more than the "
                f"{MAX_DECOMPRESSED_BYTES} mlaudit allows",
                {"declared_bytes": entry.file_size, "limit": MAX_DECOMPRESSED_BYTES},
            )
        )
    elif entry.compress_type != 0 and entry.file_size > decompression_cap(entry.compress_size):
        ratio = entry.file_size / max(entry.compress_size, 1)
        found.append(
            _bomb(
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
    if entry.compress_type == 0 and entry.compress_size != entry.file_size:
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


def _encoded_name(entry: ZipEntry) -> bytes:
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
    if local_name != _encoded_name(entry):
        differences["name"] = local_name.decode("utf-8", "replace")
    if method != entry.compress_type:
        differences["compression"] = method
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
    if entry.compress_type == 0 or entry.encrypted or entry.data_offset is None:
        return []
    if entry.file_size > decompression_cap(entry.compress_size):
        return []  # already a bomb; not decompressed
    name = entry.name
    try:
        produced, crc, complete = _decompressed_size(opened, entry)
    except _Unsupported as error:
        return [
            issue(
                "MLA107", "unsupported-compression", "Member compressed with an unknown method",
                f"member {name!r} uses compression method {error.method}, which mlaudit cannot "
                "read, so its content is unchecked",
                Severity.MEDIUM, member=name, evidence={"method": error.method},
            )
        ]
    except READ_ERRORS as error:
        return [
            issue(
                "MLA107", "corrupt-member", "Member that does not decompress",
                f"member {name!r} does not decompress ({type(error).__name__}: {error})",
                Severity.HIGH, member=name,
            )
        ]
    found = []
    if produced != entry.file_size or not complete:
        how = "decompressed" if complete else "truncated compressed"
        found.append(_size_mismatch(name, entry.file_size, produced, how))
    elif crc is not None and crc != entry.crc:
        found.append(
            issue(
                "MLA103", "crc-mismatch", "Member checksum disagrees with its content",
                f"member {name!r} decompresses to data whose CRC-32 is not the one declared",
                Severity.HIGH, member=name,
                evidence={"declared_crc": entry.crc, "actual_crc": crc},
            )
        )
    return found


class _Unsupported(Exception):
    def __init__(self, method: int) -> None:
        super().__init__(method)
        self.method = method


def _decompressed_size(opened: OpenZip, entry: ZipEntry) -> tuple[int, int | None, bool]:
    """(bytes produced up to declared size + 1, their CRC or None, whether the stream ended)."""
    limit = entry.file_size + 1
    if entry.compress_type == zipfile.ZIP_DEFLATED:
        assert entry.data_offset is not None
        raw = opened.view.window(entry.data_offset, entry.data_offset + entry.compress_size)
        raw.seek(0)
        decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
        produced, crc = 0, 0
        pending = b""
        while produced < limit:
            if not pending:
                if decompressor.eof:
                    break
                pending = raw.read(_CHUNK)
                if not pending:
                    break
            out = decompressor.decompress(pending, min(_CHUNK, limit - produced))
            pending = decompressor.unconsumed_tail
            produced += len(out)
            crc = zlib.crc32(out, crc)
            if decompressor.eof:
                break
        return produced, crc, decompressor.eof
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


@contextlib.contextmanager
def member_view(opened: OpenZip, entry: ZipEntry) -> Iterator[MappedWindow]:
    """A window on one member's content, by ZipEntry (so each duplicate is reachable).

    A stored member is read in place; a compressed one is materialised in the archive's
    temporary folder under :func:`decompression_cap`. Raises :class:`MemberUnreadable`.
    """
    name = entry.name
    if entry.encrypted:
        raise MemberUnreadable(
            issue(
                "MLA101", "unscannable-pickle", "Pickle that cannot be read",
                f"member {name!r} is encrypted, so the pickle in it cannot be checked",
                Severity.HIGH, member=name,
            )
        )
    if entry.data_offset is None:
        raise MemberUnreadable(
            issue(
                "MLA107", "unreadable-member", "Member that cannot be read",
                f"member {name!r} has no readable data", Severity.HIGH, member=name,
            )
        )
    if entry.compress_type == 0:
        yield opened.view.window(entry.data_offset, entry.data_offset + entry.compress_size)
        return
    archive = opened.archive
    if not isinstance(archive, zipfile.ZipFile) or not isinstance(entry.info, zipfile.ZipInfo):
        raise MemberUnreadable(
            issue(
                "MLA107", "unreadable-member", "Member that cannot be read",
                f"member {name!r} cannot be read", Severity.HIGH, member=name,
            )
        )
    info = entry.info
    assert opened.directory is not None
    cap = decompression_cap(entry.compress_size)
    try:
        path = materialize(lambda: archive.open(info), cap, opened.directory)
    except SizeCapExceeded as error:
        raise MemberUnreadable(
            _bomb(
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
    try:
        with mapped_file(path) as view:
            yield view
    finally:
        path.unlink(missing_ok=True)


def inspect_zip(path: Path) -> FormatReport:
    """MLA103/MLA107 checks of a zip archive's directory, local headers and streams."""
    with open_zip(path) as opened:
        return FormatReport("zip", tuple(opened.issues), (), len(opened.entries))


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
    listing.issues.extend(_duplicate_issues([m.name for m in listing.members], "tar"))
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
            listing.issues.append(_too_many(len(listing.members) + 1))
            return
        listing.members.append(member)
        listing.issues.extend(_tar_member_issues(member))
        total += max(member.size, 0)
        if member.size > MAX_DECOMPRESSED_BYTES or total > MAX_DECOMPRESSED_BYTES:
            listing.issues.append(
                _bomb(
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
                _bomb(
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
    found = _path_issues(name, name)
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hardlink"
        target = member.linkname
        escapes = bool(_path_issues(target, name)) or (
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
