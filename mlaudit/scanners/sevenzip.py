"""7z archives, read with py7zr (the ``7z`` extra): checked, then every member scanned by content.

No model loader opens a 7z file itself: what it holds reaches a loader once extracted, so
every file it extracts to is what the scan must see. py7zr decompresses the members in
archive order into mlaudit's own writers (nothing is written where the archive names), each
member goes to a private temporary file under the archive's decompression cap, and is scanned
by its content (a :data:`~mlaudit.scanners.containers.MemberScanner`) before the next one is
written, so disk use stays at one member.

Without py7zr a 7z file is refused (MLA103, high) rather than called unknown: an archive that
cannot be opened cannot be vouched for. So is an encrypted one: whoever has the password
extracts files the scan never saw.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from mlaudit.core.findings import Severity
from mlaudit.scanners.containers import (
    READ_ERRORS,
    MemberScanner,
    SizeCapExceeded,
    bomb_issue,
    decompression_cap,
    duplicate_issues,
    issue,
    members_scope,
    path_issues,
    scan_extracted,
    too_many_members,
)
from mlaudit.scanners.format_report import (
    MAX_ARCHIVE_MEMBERS,
    MAX_DECOMPRESSED_BYTES,
    ArtifactIssue,
    FormatReport,
)

if TYPE_CHECKING:
    from py7zr import FileInfo, SevenZipFile
    from py7zr.io import Py7zIO, WriterFactory

__all__ = ["INSTALL_HINT", "scan_7z_archive"]

INSTALL_HINT: Final = "pip install 'mlaudit[7z]'"
# Listing issues after which nothing is extracted: the caps would be exceeded.
_NOT_EXTRACTED: Final = ("too-many-members", "decompression-bomb")


def scan_7z_archive(path: Path, scan_member: MemberScanner) -> FormatReport:
    """Check a 7z archive's listing, then extract and scan every member. Raises only OSError."""
    try:
        import py7zr
    except ImportError:
        return _refused(
            "7z-reader-missing", "7z archive that cannot be read",
            f"this is a 7z archive and reading it needs py7zr ({INSTALL_HINT}); its members "
            "were not scanned, so it cannot be vouched for",
        )
    errors: tuple[type[BaseException], ...] = (
        *READ_ERRORS, py7zr.exceptions.ArchiveError, py7zr.exceptions.Bad7zFile
    )
    with path.open("rb") as handle:  # a file object: py7zr then extracts in one thread
        try:
            archive = py7zr.SevenZipFile(handle, mode="r")
        except py7zr.exceptions.PasswordRequired:
            return _encrypted()
        except errors as error:
            return FormatReport("7z", (_unreadable(error),))
        with archive:
            listing = archive.list()
            report = FormatReport("7z", tuple(_listing_issues(listing, path)), (), len(listing))
            if any(found.key.startswith(_NOT_EXTRACTED) for found in report.issues):
                return report
            if archive.needs_password():
                return report.merged(_encrypted())
            cap = decompression_cap(_size(path))
            return report.merged(_extract(archive, cap, scan_member, errors))


def _size(path: Path) -> int:
    return path.stat().st_size


def _listing_issues(listing: list[FileInfo], path: Path) -> list[ArtifactIssue]:
    if len(listing) > MAX_ARCHIVE_MEMBERS:
        return [too_many_members(len(listing))]
    found: list[ArtifactIssue] = []
    for info in listing:
        name = info.filename
        found.extend(path_issues(name, name))
        if info.is_symlink:
            found.append(
                issue(
                    "MLA103", "symlink", "Symbolic link in archive",
                    f"member {name!r} is a symbolic link: extracting it lets later members, "
                    "or the loader, read and write through it",
                    Severity.CRITICAL, member=name,
                )
            )
    found.extend(duplicate_issues([info.filename for info in listing], "7z"))
    declared = sum(max(info.uncompressed, 0) for info in listing)
    cap = decompression_cap(_size(path))
    if declared > min(cap, MAX_DECOMPRESSED_BYTES):
        found.append(
            bomb_issue(
                None,
                f"the members declare {declared} bytes in all, more than the {cap} bytes "
                "mlaudit allows for an archive of this size",
                {"declared_bytes": declared, "limit": cap},
            )
        )
    return found


def _refused(kind: str, title: str, message: str) -> FormatReport:
    return FormatReport("7z", (issue("MLA103", kind, title, message, Severity.HIGH),))


def _encrypted() -> FormatReport:
    return _refused(
        "7z-encrypted", "Encrypted 7z archive",
        "the 7z archive is encrypted: its members cannot be scanned without the password, "
        "and whoever has it extracts files the scan never saw",
    )


def _unreadable(error: BaseException) -> ArtifactIssue:
    return issue(
        "MLA107", "unreadable-7z", "7z archive that cannot be read",
        f"the 7z archive cannot be read to its end ({type(error).__name__}: {error}); what "
        "it holds could not all be scanned", Severity.HIGH,
    )


@dataclass
class _Extraction:
    """Where py7zr's writers go, and what the scans of finished members found."""

    directory: Path
    cap: int
    scan_member: MemberScanner
    written: int = 0
    reports: list[FormatReport] = field(default_factory=list)
    current: tuple[str, Path, IO[bytes]] | None = None

    def spend(self, size: int) -> None:
        self.written += size
        if self.written > self.cap:
            raise SizeCapExceeded(self.cap)

    def start(self, name: str) -> IO[bytes]:
        self.finish()
        descriptor, target = tempfile.mkstemp(dir=self.directory, prefix="member-")
        handle = open(descriptor, "wb")  # noqa: SIM115 -- closed by finish()
        self.current = (name, Path(target), handle)
        return handle

    def finish(self) -> None:
        """Scan the member written last, then remove it."""
        if self.current is None:
            return
        name, target, handle = self.current
        self.current = None
        handle.close()
        try:
            self.reports.append(scan_extracted(name, target, self.scan_member))
        finally:
            target.unlink(missing_ok=True)


def _extract(
    archive: SevenZipFile,
    cap: int,
    scan_member: MemberScanner,
    errors: tuple[type[BaseException], ...],
) -> FormatReport:
    """Every member extracted and scanned in turn; what failed is an issue, and the members
    scanned before it keep their findings."""
    failure: ArtifactIssue | None = None
    with members_scope() as too_deep, tempfile.TemporaryDirectory(prefix="mlaudit-") as scratch:
        if too_deep is not None:
            return FormatReport("", (too_deep,))
        extraction = _Extraction(Path(scratch), cap, scan_member)
        try:
            archive.extract(factory=_factory(extraction))
            extraction.finish()
        except SizeCapExceeded as error:
            failure = bomb_issue(
                None, f"the members decompress to more than {error.limit} bytes; what "
                "follows was not scanned", {"limit": error.limit},
            )
        except errors as error:
            failure = _unreadable(error)
        finally:
            if extraction.current is not None:
                extraction.current[2].close()
    report = FormatReport("", (failure,) if failure else ())
    for found in extraction.reports:
        report = report.merged(found)
    return report


def _factory(extraction: _Extraction) -> WriterFactory:
    """py7zr's writer factory: each member streams into :meth:`_Extraction.start`'s file."""
    from py7zr.io import Py7zIO, WriterFactory

    class Writer(Py7zIO):
        def __init__(self, handle: IO[bytes]) -> None:
            self._handle = handle

        def write(self, s: bytes | bytearray) -> int:
            extraction.spend(len(s))
            return self._handle.write(s)

        def read(self, size: int | None = None) -> bytes:
            return b""  # py7zr never reads back what it extracts to a factory's writer

        def seek(self, offset: int, whence: int = 0) -> int:
            return 0 if self._handle.closed else self._handle.seek(offset, whence)

        def flush(self) -> None:
            if not self._handle.closed:
                self._handle.flush()

        def size(self) -> int:
            return 0 if self._handle.closed else self._handle.tell()

    class Factory(WriterFactory):
        def create(self, filename: str) -> Py7zIO:
            return Writer(extraction.start(filename))

    return Factory()

