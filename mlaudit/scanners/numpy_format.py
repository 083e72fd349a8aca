"""NumPy ``.npy`` and ``.npz`` files, parsed by mlaudit rather than by numpy's reader.

An ``.npy`` file is a magic string, a version, a header (a Python dict literal, read here with
``ast.literal_eval`` only) and the array data. When the dtype holds Python objects (``'|O'``,
or a structured dtype with an object field) the data is a pickle that
``numpy.load(allow_pickle=True)`` unpickles: it is scanned from the end of the header. An
``.npz`` file is a zip of ``.npy`` members: the zip checks of
:func:`mlaudit.scanners.containers.inspect_zip` apply, then each member (each duplicate too) is
read as an ``.npy``. numpy itself is used only to interpret the ``descr`` value, which is
metadata and runs nothing.
"""

from __future__ import annotations

import ast
import io
import math
import struct
import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.scanners.containers import (
    READ_ERRORS,
    MappedWindow,
    MemberUnreadable,
    OpenZip,
    ZipEntry,
    embedded_scan,
    issue,
    mapped_file,
    member_view,
    open_zip,
)
from mlaudit.scanners.format_report import ArtifactIssue, FormatReport

__all__ = ["NPY_MAGIC", "scan_npy", "scan_npz"]

NPY_MAGIC: Final = b"\x93NUMPY"
_HEADER_LENGTH: Final = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"),
                         (3, 0): ("<I", "utf8")}
_EXPECTED_KEYS: Final = frozenset({"descr", "fortran_order", "shape"})
# numpy refuses headers over 10000 characters unless allow_pickle=True, when it reads any
# size; past this many bytes mlaudit does not parse the header and reports it instead.
_MAX_HEADER_BYTES: Final = 1024**2
# How much of a compressed npz member is decompressed to read its header first.
_PEEK_BYTES: Final = 64 * 1024


class _BadHeader(Exception):
    pass


def scan_npy(path: Path) -> FormatReport:
    """Scan an ``.npy`` file. Raises only OSError (the file cannot be opened)."""
    with mapped_file(path) as view:
        return _scan_npy_view(view, None, top_level=True)


def scan_npz(path: Path) -> FormatReport:
    """Scan an ``.npz`` archive: zip checks, then every member as ``.npy``. Raises only OSError."""
    with open_zip(path) as opened:
        report = FormatReport("npz", tuple(opened.issues), (), len(opened.entries))
        if not opened.readable:
            return report
        for entry in opened.entries:
            # A sealed member (encrypted for real) is already reported by open_zip.
            if entry.is_dir or entry.sealed:
                continue
            numeric = _numeric_member(opened, entry)
            if numeric is not None:
                report = report.merged(numeric)
                continue
            try:
                with member_view(opened, entry) as view:
                    report = report.merged(_scan_npy_view(view, entry.name, top_level=False))
            except MemberUnreadable as error:
                report = report.merged(FormatReport("npz", (error.issue,)))
        return report


def _numeric_member(opened: OpenZip, entry: ZipEntry) -> FormatReport | None:
    """The report of a compressed member whose header (read from the start of the stream)
    declares a numeric dtype, without decompressing the data; None: read it in full."""
    archive = opened.archive
    if (
        entry.compress_type == 0
        or entry.encrypted
        or entry.data_offset is None
        or not isinstance(archive, zipfile.ZipFile)
        or not isinstance(entry.info, zipfile.ZipInfo)
    ):
        return None
    try:
        with archive.open(entry.info) as stream:
            prefix = stream.read(_PEEK_BYTES)
    except READ_ERRORS:
        return None  # reading it in full reports why
    header = _read_header(MappedWindow(prefix), entry.name, top_level=False)
    if not isinstance(header, _Header) or header.dtype.hasobject:
        return None
    size = entry.file_size - header.end  # inspect_zip checked the declared size
    return FormatReport(
        "npz", tuple(_data_size_issues(entry.name, header.dtype, header.shape, size))
    )


def _header_issue(member: str | None, message: str, **evidence: JsonValue) -> ArtifactIssue:
    return issue(
        "MLA107", "npy-header", "NumPy header that cannot be parsed",
        f"{member or 'the file'}: {message}", Severity.HIGH, member=member,
        evidence=dict(evidence),
    )


@dataclass(frozen=True)
class _Header:
    dtype: np.dtype[np.generic]
    shape: tuple[int, ...]
    end: int


def _scan_npy_view(view: MappedWindow, member: str | None, *, top_level: bool) -> FormatReport:
    header = _read_header(view, member, top_level=top_level)
    if isinstance(header, FormatReport):
        return header
    data = view.window(header.end)
    if header.dtype.hasobject:
        found, embedded = embedded_scan(data, member, offset=header.end)
        return FormatReport("npy", tuple(found), (embedded,))
    issues = _data_size_issues(member, header.dtype, header.shape, data.size)
    return FormatReport("npy", tuple(issues))


def _read_header(
    view: MappedWindow, member: str | None, *, top_level: bool
) -> _Header | FormatReport:
    """The parsed header, or the report that ends the scan (an issue, or not an .npy)."""
    detail = "npy"
    view.seek(0)
    head = view.read(len(NPY_MAGIC) + 2)
    if not head.startswith(NPY_MAGIC):
        if not top_level:
            # NpzFile hands a member without the magic back as raw bytes: nothing runs.
            return FormatReport("npz")
        found = [
            issue(
                "MLA107", "not-npy", "Not a NumPy .npy file",
                "the file does not start with the .npy magic string; numpy.load(..., "
                "allow_pickle=True) unpickles such a file, so it is scanned as a pickle",
                Severity.HIGH,
            )
        ]
        more, embedded = embedded_scan(view, None)
        return FormatReport(detail, (*found, *more), (embedded,))
    if len(head) < len(NPY_MAGIC) + 2:
        return FormatReport(detail, (_header_issue(member, "the version bytes are missing"),))
    version = (head[-2], head[-1])
    layout = _HEADER_LENGTH.get(version)
    if layout is None:
        message = f"unsupported .npy version {version[0]}.{version[1]}"
        return FormatReport(detail, (_header_issue(member, message),))
    length_format, encoding = layout
    length_bytes = view.read(struct.calcsize(length_format))
    if len(length_bytes) < struct.calcsize(length_format):
        return FormatReport(detail, (_header_issue(member, "the header length is truncated"),))
    (header_length,) = struct.unpack(length_format, length_bytes)
    header_end = view.tell() + header_length
    if header_length > _MAX_HEADER_BYTES:
        message = f"a {header_length}-byte header is too large to verify"
        return FormatReport(detail, (_header_issue(member, message, bytes=header_length),))
    if header_end > view.size:
        return FormatReport(detail, (_header_issue(member, "the header is truncated"),))
    raw_header = view.read(header_length)
    try:
        dtype, shape = _parse_header(raw_header, encoding, version)
    except _BadHeader as error:
        return FormatReport(detail, (_header_issue(member, str(error)),))
    return _Header(dtype, shape, header_end)


def _data_size_issues(
    member: str | None, dtype: np.dtype[np.generic], shape: tuple[int, ...], size: int
) -> list[ArtifactIssue]:
    expected = math.prod(shape) * dtype.itemsize
    if expected == size:
        return []
    if size < expected:
        message = f"the header declares {expected} bytes of data but only {size} follow"
        kind = "npy-truncated"
    else:
        message = (
            f"{size - expected} bytes follow the {expected} bytes of array data; numpy "
            "ignores them, so they can hide content from a reviewer"
        )
        kind = "npy-trailing-data"
    return [
        issue(
            "MLA107", kind, "NumPy data size disagrees with its header",
            f"{member or 'the file'}: {message}", Severity.MEDIUM, member=member,
            evidence={"expected_bytes": expected, "actual_bytes": size},
        )
    ]


def _parse_header(
    raw: bytes, encoding: str, version: tuple[int, int]
) -> tuple[np.dtype[np.generic], tuple[int, ...]]:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        raise _BadHeader(f"the header is not {encoding} text") from error
    try:
        header = _literal(text, version)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as error:
        raise _BadHeader(f"the header is not a Python literal ({type(error).__name__})") from error
    if not isinstance(header, dict):
        raise _BadHeader("the header is not a dictionary")
    if set(header) != _EXPECTED_KEYS:
        keys = sorted(str(key) for key in header)
        raise _BadHeader(f"the header has keys {keys}, not descr, fortran_order and shape")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape):
        raise _BadHeader(f"shape {shape!r} is not a tuple of integers")
    if any(d < 0 for d in shape):
        raise _BadHeader(f"shape {shape!r} has a negative dimension")
    if not isinstance(header["fortran_order"], bool):
        raise _BadHeader("fortran_order is not a bool")
    try:
        # Interpreting a descr literal is metadata work in numpy: it imports nothing and runs
        # no Python code from the file. numpy raises assorted types for nonsense descrs.
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except Exception as error:
        raise _BadHeader(f"descr {header['descr']!r} is not a valid dtype") from error
    return dtype, tuple(int(d) for d in shape)


def _literal(text: str, version: tuple[int, int]) -> object:
    try:
        return ast.literal_eval(text)
    except SyntaxError:
        if version > (2, 0):
            raise
    # Headers written by Python 2 spell long integers with a trailing L, which numpy strips.
    return ast.literal_eval(_strip_long_suffix(text))


def _strip_long_suffix(text: str) -> str:
    tokens = []
    after_number = False
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if after_number and token.type == tokenize.NAME and token.string == "L":
                continue
            tokens.append(token)
            after_number = token.type == tokenize.NUMBER
    except (tokenize.TokenError, IndentationError) as error:
        raise SyntaxError(str(error)) from error
    return tokenize.untokenize(tokens)

