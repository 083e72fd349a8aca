"""Compressed joblib files: decompressed as a stream, under a cap, then scanned as a pickle.

``joblib.dump(..., compress=...)`` writes the joblib pickle through zlib, gzip, bz2, lzma
(``FORMAT_ALONE``), xz or lz4; joblib older than 0.10 wrote its own ``ZF`` format (a hex
length, then one zlib stream), which ``joblib.load`` still reads. The compressor is chosen
by the same magic prefixes ``joblib.numpy_pickle_utils._detect_compressor`` checks, in the
same order, so mlaudit decompresses exactly what joblib would.

The stream is written to a temporary file with a hard cap of
``min(MAX_DECOMPRESSED_BYTES, MAX_COMPRESSION_RATIO * compressed size + 1 MiB)`` and scanned
through a memory map: memory stays bounded however large the content. Past the cap the file is
a decompression bomb (MLA103, critical) and its content is not scanned. A stream that breaks
part-way is reported (MLA107) and what decompressed before the break is still scanned, since
joblib would have unpickled it as it arrived.
"""

from __future__ import annotations

import bz2
import functools
import importlib
import lzma
import re
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

from mlaudit.core.findings import Severity
from mlaudit.scanners.containers import (
    READ_ERRORS,
    SizeCapExceeded,
    decompression_cap,
    embedded_scan,
    issue,
    mapped_file,
)
from mlaudit.scanners.format_report import (
    MAX_COMPRESSION_RATIO,
    ArtifactIssue,
    EmbeddedPickle,
    FormatReport,
)

__all__ = ["JOBLIB_PREFIXES", "SNIFF_BYTES", "scan_compressed_joblib", "sniff_compression"]

# joblib.compressor: _ZFILE_PREFIX first, then the registered compressors in order.
JOBLIB_PREFIXES: Final = (
    ("compat", b"ZF"),
    ("zlib", b"\x78"),
    ("gzip", b"\x1f\x8b"),
    ("bz2", b"BZ"),
    ("lzma", b"\x5d\x00"),
    ("xz", b"\xfd\x37\x7a\x58\x5a"),
    ("lz4", b"\x04\x22\x4d\x18"),
)
_ZFILE_HEADER: Final = 2 + len(hex(2**64))  # b"ZF" + the length in hex, padded
SNIFF_BYTES: Final = _ZFILE_HEADER
_CHUNK: Final = 1024**2
_COMPANION_WRAPPERS: Final = frozenset(
    {
        "joblib.numpy_pickle_compat.NDArrayWrapper",
        "joblib.numpy_pickle_compat.ZNDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle_compat.NDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle_compat.ZNDArrayWrapper",
    }
)


def sniff_compression(head: bytes) -> str | None:
    """The joblib compressor that would decompress a file starting with ``head``, or None.

    Returns one of "compat" (joblib < 0.10 ``ZF`` files), "zlib", "gzip", "bz2", "lzma", "xz",
    "lz4". ``head`` should hold at least :data:`SNIFF_BYTES` bytes.

    joblib routes on the prefixes of :data:`JOBLIB_PREFIXES`, some a single byte (any file
    starting with ``x`` goes to zlib). Where the stream's own header must then hold more,
    this checks it too (the zlib header checksum, gzip's deflate method, bz2's ``h`` and block
    size, the ``ZF`` hexadecimal length): a file that fails those checks makes joblib's
    decompressor raise before one byte reaches the unpickler, so nothing it holds can run.
    """
    for name, prefix in JOBLIB_PREFIXES:
        if head.startswith(prefix):
            return name if _STREAM_HEADER[name](head) else None
    return None


def _zlib_header(head: bytes) -> bool:
    # RFC 1950: CMF 0x78 is deflate with a 32 KiB window; (CMF * 256 + FLG) % 31 == 0.
    return len(head) < 2 or (head[0] * 256 + head[1]) % 31 == 0


def _zfile_header(head: bytes) -> bool:
    # numpy_pickle_compat.read_zfile: int(head[2:21], 16), which allows spaces and "0x".
    length = head[2:_ZFILE_HEADER]
    if len(head) < _ZFILE_HEADER:
        return re.fullmatch(rb"\s*(0[xX])?[0-9a-fA-F]*\s*", length) is not None
    try:
        int(length, 16)
    except ValueError:
        return False
    return True


_STREAM_HEADER: Final[dict[str, Callable[[bytes], bool]]] = {
    "compat": _zfile_header,
    "zlib": _zlib_header,
    "gzip": lambda head: len(head) < 3 or head[2] == 8,
    "bz2": lambda head: len(head) < 4 or (head[2:3] == b"h" and b"1"[0] <= head[3] <= b"9"[0]),
    "lzma": lambda head: True,
    "xz": lambda head: True,
    "lz4": lambda head: True,
}


class _Corrupt(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


def scan_compressed_joblib(path: Path) -> FormatReport:
    """Decompress a compressed joblib file under a cap and scan it. Raises only OSError."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(_ZFILE_HEADER + 1)
    kind = sniff_compression(head)
    detail = f"joblib-{kind}" if kind else "joblib-compressed"
    if kind is None:
        return FormatReport(
            detail,
            (
                issue(
                    "MLA107", "not-compressed", "Not a compressed joblib file",
                    "the file does not start with the magic number and stream header of "
                    "any compressor joblib reads", Severity.HIGH,
                ),
            ),
        )
    cap = decompression_cap(size)
    issues: list[ArtifactIssue] = []
    with tempfile.TemporaryDirectory(prefix="mlaudit-") as temporary:
        target = Path(temporary) / "decompressed.pkl"
        try:
            _decompress(kind, path, target, cap, issues)
        except SizeCapExceeded as error:
            issues.append(
                issue(
                    "MLA103", "decompression-bomb", "Decompression bomb",
                    f"the {kind} stream expands past {error.limit} bytes from {size} "
                    f"compressed (ratio limit {MAX_COMPRESSION_RATIO:.0f}); its content was "
                    "not scanned",
                    Severity.CRITICAL, member="decompressed",
                    evidence={"compressed_bytes": size, "limit": error.limit},
                )
            )
            return FormatReport(detail, tuple(issues), (), 1)
        except _Unavailable as error:
            issues.append(
                issue(
                    "MLA101", "unscannable-pickle", "Compressed pickle that cannot be read",
                    f"the file is {kind}-compressed and {error}, so the pickle in it was not "
                    "checked", Severity.HIGH, member="decompressed",
                )
            )
            return FormatReport(detail, tuple(issues), (), 1)
        found, embedded = _scan_output(target)
        issues.extend(found)
        issues.extend(_companion_issues(embedded))
        return FormatReport(detail, tuple(issues), (embedded,), 1)


def _scan_output(target: Path) -> tuple[list[ArtifactIssue], EmbeddedPickle]:
    with mapped_file(target) as view:
        return embedded_scan(view, None, label="the decompressed stream")


def _companion_issues(embedded: EmbeddedPickle) -> list[ArtifactIssue]:
    wrappers = sorted(
        {i.qualified_name for i in embedded.scan.imports} & _COMPANION_WRAPPERS
    )
    if not wrappers:
        return []
    return [
        issue(
            "MLA103", "companion-files", "Pickle that loads companion files",
            f"the pickle uses {', '.join(wrappers)}: joblib then loads arrays from files named "
            "inside the pickle, relative to this file's folder, with numpy.load("
            "allow_pickle=True); those files were not checked and the names may climb out of "
            "the folder",
            Severity.HIGH, evidence={"wrappers": list(wrappers)},
        )
    ]


class _Unavailable(Exception):
    pass


_STREAM_ERRORS: Final[tuple[type[BaseException], ...]] = (_Corrupt, *READ_ERRORS)


def _decompress(
    kind: str, path: Path, target: Path, cap: int, issues: list[ArtifactIssue]
) -> None:
    """Write the decompressed stream to ``target``; a broken stream is an issue, and what
    decompressed before the break is kept for scanning."""
    with path.open("rb") as source, target.open("wb") as sink:
        try:
            if kind in ("zlib", "gzip"):
                # joblib's BinaryZlibFile/BinaryGzipFile read one zlib stream (wbits 15 or 31).
                wbits = zlib.MAX_WBITS | (16 if kind == "gzip" else 0)
                if trailing := _zlib_stream(source, sink, cap, wbits):
                    issues.append(_trailing_issue(kind, trailing))
            elif kind == "compat":
                _compat_stream(source, sink, cap, issues)
            elif kind == "bz2":
                _file_stream(functools.partial(bz2.BZ2File, source, "rb"), sink, cap)
            elif kind in ("lzma", "xz"):
                # joblib opens both with lzma.LZMAFile(fileobj, "rb"): FORMAT_AUTO.
                _file_stream(functools.partial(lzma.LZMAFile, source, "rb"), sink, cap)
            else:
                _file_stream(_lz4_reader(source), sink, cap)
        except _STREAM_ERRORS as error:
            issues.append(
                issue(
                    "MLA107", "corrupt-stream", "Compressed stream that breaks",
                    f"the {kind} stream breaks after {sink.tell()} bytes "
                    f"({type(error).__name__}: {error}); joblib unpickles what came before",
                    Severity.HIGH, member="decompressed",
                )
            )


def _write(sink: IO[bytes], data: bytes, cap: int) -> None:
    if sink.tell() + len(data) > cap:
        raise SizeCapExceeded(cap)
    sink.write(data)


def _zlib_stream(source: IO[bytes], sink: IO[bytes], cap: int, wbits: int) -> int:
    """Decompress one zlib/gzip stream; returns how many bytes follow its end marker."""
    decompressor = zlib.decompressobj(wbits)
    pending = b""
    while not decompressor.eof:
        if not pending:
            pending = source.read(_CHUNK)
            if not pending:
                raise _Corrupt("the compressed stream ends before its end marker")
        _write(sink, decompressor.decompress(pending, _CHUNK), cap)
        pending = decompressor.unconsumed_tail
    trailing = len(decompressor.unused_data)
    while chunk := source.read(_CHUNK):
        trailing += len(chunk)
    return trailing


def _trailing_issue(kind: str, trailing: int) -> ArtifactIssue:
    return issue(
        "MLA107", "trailing-data", "Data after the compressed stream",
        f"{trailing} bytes follow the end of the {kind} stream: joblib's reader never returns "
        "on such a file (it loops on the leftover bytes), and the bytes can hide content",
        Severity.MEDIUM, member="decompressed", evidence={"bytes": trailing},
    )


def _compat_stream(
    source: IO[bytes], sink: IO[bytes], cap: int, issues: list[ArtifactIssue]
) -> None:
    """joblib < 0.10: b"ZF", the length in hex padded to 19 characters, an optional space,
    then one zlib stream (numpy_pickle_compat.read_zfile)."""
    header = source.read(_ZFILE_HEADER)
    try:
        declared = int(header[2:], 16)
    except ValueError as error:
        raise _Corrupt("the ZF length field is not a hexadecimal number") from error
    if source.read(1) != b" ":
        source.seek(_ZFILE_HEADER)
    # read_zfile decompresses the rest of the file in one call, which ignores what follows
    # the stream.
    _zlib_stream(source, sink, cap, zlib.MAX_WBITS)
    produced = sink.tell()
    if produced != declared:
        issues.append(
            issue(
                "MLA103", "size-mismatch", "Declared size disagrees with the content",
                f"the ZF header declares {declared} bytes but the stream holds {produced}",
                Severity.HIGH, member="decompressed",
                evidence={"declared_bytes": declared, "actual_bytes": produced},
            )
        )


def _file_stream(open_reader: Callable[[], IO[bytes]], sink: IO[bytes], cap: int) -> None:
    with open_reader() as reader:
        while chunk := reader.read(_CHUNK):
            _write(sink, chunk, cap)


def _lz4_reader(source: IO[bytes]) -> Callable[[], IO[bytes]]:
    try:
        frame: Any = importlib.import_module("lz4.frame")
    except ImportError:
        raise _Unavailable("the lz4 package is not installed here") from None

    def open_reader() -> IO[bytes]:
        reader: IO[bytes] = frame.LZ4FrameFile(source, mode="rb")
        return reader

    return open_reader

