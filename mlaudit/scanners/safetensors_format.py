"""Static check of safetensors files: the header, and how the tensors tile the data region.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON, then the raw
tensor bytes. The JSON maps each tensor name to its ``dtype``, ``shape`` and ``data_offsets``
(relative to the start of the data region), plus an optional ``__metadata__`` object of
strings.

The check is written here rather than left to the ``safetensors`` library on purpose: the
library stops at the first error and reports it in its own words, and accepts some tricks
silently (duplicate tensor names, where the last one wins; extra fields in a tensor entry;
whitespace before the JSON, which hides the format from content sniffers). An audit must list
every trick in the file, each with the tensor it concerns, so the header is parsed with
:func:`json.loads` (duplicate keys recorded through ``object_pairs_hook``) and every rule is
checked on its own. The data region is never read: only its size matters.

Every violation is an MLA107 issue, HIGH unless noted:

* the file is shorter than 8 bytes; N is larger than :data:`MAX_JSON_HEADER_BYTES` or than
  the file; the header is not UTF-8, not JSON (``NaN``/``Infinity`` included: other parsers
  reject them), or not an object;
* a tensor name given twice, or a field given twice in one entry;
* ``__metadata__`` that is not an object of strings;
* a tensor entry that is not an object, lacks a field, or has an unknown ``dtype``; a shape
  that is not a list of non-negative integers; ``data_offsets`` that are not two non-negative
  integers with begin <= end <= the data size; a byte count other than the product of the
  shape times the dtype's size (sub-byte dtypes must fill whole bytes);
* two tensors whose bytes overlap, or an empty tensor placed strictly inside another; bytes
  of the data region that no tensor covers, between tensors or after the last one (room for
  a hidden payload);
* MEDIUM: unknown fields in a tensor entry, and whitespace before the header's ``{``.

Empty tensors (no bytes) take part in the overlap and gap checks only through the rule above:
they hold nothing and hide nothing.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.scanners.format_report import (
    MAX_ISSUES_PER_RULE,
    MAX_JSON_HEADER_BYTES,
    ArtifactIssue,
    FormatReport,
    IssueCollector,
)

MALFORMED_RULE: Final = "MLA107"
METADATA_KEY: Final = "__metadata__"

# Bits per element of every dtype the safetensors format defines (library 0.6+).
DTYPE_BITS: Final[dict[str, int]] = {
    "BOOL": 8, "U8": 8, "I8": 8,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}
_FIELDS: Final = ("dtype", "shape", "data_offsets")
# At most this many issues are listed; the rest are counted in one summary issue.
MAX_ISSUES: Final = MAX_ISSUES_PER_RULE
_HEADER_LENGTH_BYTES: Final = 8


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes starting with ``head`` (9 bytes or more) is safetensors.

    The 8-byte header length must fit in the file and under the header cap, and the header
    must open with ``{``.
    """
    if len(head) <= _HEADER_LENGTH_BYTES:
        return False
    length = int.from_bytes(head[:_HEADER_LENGTH_BYTES], "little")
    return (
        2 <= length <= MAX_JSON_HEADER_BYTES
        and length <= size - _HEADER_LENGTH_BYTES
        and head[_HEADER_LENGTH_BYTES:_HEADER_LENGTH_BYTES + 1] == b"{"
    )


def scan_safetensors(path: str | os.PathLike[str]) -> FormatReport:
    """Check a safetensors file's header and data layout without the safetensors library.

    Raises :class:`OSError` only when the file cannot be read; everything wrong with its
    content is an issue in the returned report.
    """
    model = Path(path)
    issues = _Issues()
    with model.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        prefix = handle.read(_HEADER_LENGTH_BYTES)
        if len(prefix) < _HEADER_LENGTH_BYTES:
            issues.add("file-too-short", "File too short for safetensors",
                       f"the file has {size} bytes, fewer than the 8 of the header length")
            return FormatReport("safetensors (truncated)", issues.result())
        length = int.from_bytes(prefix, "little")
        if length > MAX_JSON_HEADER_BYTES:
            issues.add("header-too-large", "Header length over the cap",
                       f"the header claims {length} bytes, more than the "
                       f"{MAX_JSON_HEADER_BYTES} a safetensors header may take",
                       evidence={"header_bytes": length, "file_bytes": size})
            return FormatReport("safetensors (header too large)", issues.result())
        if length > size - _HEADER_LENGTH_BYTES:
            issues.add("header-past-end", "Header length larger than the file",
                       f"the header claims {length} bytes, but only "
                       f"{size - _HEADER_LENGTH_BYTES} follow the length field",
                       evidence={"header_bytes": length, "file_bytes": size})
            return FormatReport("safetensors (header past end of file)", issues.result())
        raw = handle.read(length)
    data_size = size - _HEADER_LENGTH_BYTES - length
    header = _parse_header(raw, issues)
    if header is None:
        return FormatReport("safetensors (unreadable header)", issues.result())
    tensors = _check_entries(header, data_size, issues)
    _check_layout(tensors, data_size, issues)
    count = sum(1 for name in header if name != METADATA_KEY)
    return FormatReport(f"safetensors ({count} tensors, {data_size} data bytes)",
                        issues.result())


# ============================================================================================


class _Issues:
    """Builds safetensors' MLA107 issues from short keys; :class:`IssueCollector` caps them."""

    def __init__(self) -> None:
        self._collector = IssueCollector()

    def add(self, key: str, title: str, message: str, *, tensor: str | None = None,
            severity: Severity = Severity.HIGH, pointer: str | None = None,
            evidence: dict[str, JsonValue] | None = None) -> None:
        full_key = f"safetensors-{key}" + (f":{tensor}" if tensor is not None else "")
        details: dict[str, JsonValue] = dict(evidence or {})
        if tensor is not None:
            details.setdefault("tensor", tensor[:300])
        self._collector.add(ArtifactIssue(
            MALFORMED_RULE, full_key, title, message, severity, None,
            pointer or (f"tensor {tensor[:200]!r}" if tensor is not None else None), details,
        ))

    def result(self) -> tuple[ArtifactIssue, ...]:
        return self._collector.result()


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys it was given more than once."""

    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj and key not in obj.duplicates:
            obj.duplicates.append(key)
        obj[key] = value  # the last one wins, as in json.loads and in the library
    return obj


class _NonStandardConstant(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise _NonStandardConstant(f"non-standard JSON constant {name}")


def _parse_header(raw: bytes, issues: _Issues) -> _Object | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        issues.add("header-not-utf8", "Header is not UTF-8",
                   f"the header is not valid UTF-8 text: {error}")
        return None
    if text[:1] != "{" and text.lstrip()[:1] == "{":
        issues.add("header-leading-space", "Header does not start with '{'",
                   "whitespace precedes the header's JSON object: loaders accept it, but "
                   "tools that recognize safetensors by its '{' do not",
                   severity=Severity.MEDIUM)
    try:
        header: object = json.loads(text, object_pairs_hook=_pairs,
                                    parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        issues.add("header-not-json", "Header is not valid JSON",
                   f"the header does not parse as JSON: {str(error)[:300]}")
        return None
    if not isinstance(header, _Object):
        issues.add("header-not-object", "Header is not a JSON object",
                   f"the header is a JSON {type(header).__name__}, not an object")
        return None
    for name in header.duplicates:
        issues.add("duplicate-tensor", "Tensor named twice",
                   f"the header names {name!r} more than once; readers keep one entry and "
                   "silently drop the other", tensor=name)
    return header


@dataclass
class _Span:
    name: str
    begin: int
    end: int


def _check_entries(header: _Object, data_size: int, issues: _Issues) -> list[_Span]:
    spans: list[_Span] = []
    for name, entry in header.items():
        if name == METADATA_KEY:
            _check_metadata(entry, issues)
            continue
        span = _check_entry(name, entry, data_size, issues)
        if span is not None:
            spans.append(span)
    return spans


def _check_metadata(metadata: object, issues: _Issues) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, _Object):
        issues.add("metadata-not-object", "__metadata__ is not an object of strings",
                   f"__metadata__ is a JSON {_json_type(metadata)}, not an object",
                   tensor=METADATA_KEY)
        return
    for key in metadata.duplicates:
        issues.add("duplicate-field", "Field given twice",
                   f"__metadata__ gives {key!r} more than once", tensor=f"{METADATA_KEY}.{key}",
                   pointer=f"__metadata__ key {key[:200]!r}")
    for key, value in metadata.items():
        if not isinstance(value, str):
            issues.add("metadata-not-string", "__metadata__ value is not a string",
                       f"__metadata__[{key[:100]!r}] is a JSON {_json_type(value)}; the "
                       "format allows strings only", tensor=f"{METADATA_KEY}.{key}",
                       pointer=f"__metadata__ key {key[:200]!r}")


def _check_entry(name: str, entry: object, data_size: int, issues: _Issues) -> _Span | None:
    """Check one tensor entry; return its byte span when its offsets are usable."""
    if not isinstance(entry, _Object):
        issues.add("entry-not-object", "Tensor entry is not an object",
                   f"tensor {name!r} is described by a JSON {_json_type(entry)}, not an object",
                   tensor=name)
        return None
    for key in entry.duplicates:
        issues.add("duplicate-field", "Field given twice",
                   f"tensor {name!r} gives {key!r} more than once", tensor=f"{name}.{key}",
                   pointer=f"tensor {name[:200]!r} field {key[:100]!r}")
    missing = [key for key in _FIELDS if key not in entry]
    if missing:
        issues.add("missing-field", "Tensor entry lacks a field",
                   f"tensor {name!r} has no {', '.join(missing)}", tensor=name,
                   evidence={"missing": [key for key in missing]})
    extra = sorted(key for key in entry if key not in _FIELDS)
    if extra:
        issues.add("unknown-field", "Tensor entry has unknown fields",
                   f"tensor {name!r} carries fields the format does not define "
                   f"({', '.join(k[:50] for k in extra[:10])}); loaders ignore them",
                   tensor=name, severity=Severity.MEDIUM,
                   evidence={"fields": [k[:100] for k in extra[:20]]})
    bits = _dtype_bits(name, entry.get("dtype"), "dtype" in entry, issues)
    elements = _elements(name, entry.get("shape"), "shape" in entry, data_size, issues)
    span = _offsets(name, entry.get("data_offsets"), "data_offsets" in entry, data_size, issues)
    if bits is None or elements is None or span is None:
        return span
    total_bits = elements * bits
    stored = span.end - span.begin
    if total_bits % 8:
        issues.add("partial-byte", "Tensor does not fill whole bytes",
                   f"tensor {name!r} has {elements} elements of {bits} bits, which do not end "
                   "on a byte boundary", tensor=name)
    elif total_bits // 8 != stored:
        issues.add("size-mismatch", "Tensor size does not match its shape",
                   f"tensor {name!r} spans {stored} bytes, but its shape and dtype need "
                   f"{total_bits // 8}", tensor=name,
                   evidence={"stored_bytes": stored, "expected_bytes": total_bits // 8})
    return span


def _dtype_bits(name: str, dtype: object, present: bool, issues: _Issues) -> int | None:
    if isinstance(dtype, str) and dtype in DTYPE_BITS:
        return DTYPE_BITS[dtype]
    if present:
        shown = dtype[:40] if isinstance(dtype, str) else _json_type(dtype)
        issues.add("bad-dtype", "Unknown dtype",
                   f"tensor {name!r} has dtype {shown!r}, which safetensors does not define",
                   tensor=name)
    return None


def _elements(name: str, shape: object, present: bool, data_size: int,
              issues: _Issues) -> int | None:
    if not present:
        return None
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        issues.add("bad-shape", "Shape is not a list of non-negative integers",
                   f"tensor {name!r} has shape {_short(shape)}", tensor=name)
        return None
    elements = 1
    # Past the data size (in bits, for the smallest dtype) the product only matters as "too
    # big"; stopping there keeps hostile shapes from building huge integers.
    ceiling = (data_size + 1) * 8
    for dimension in shape:
        elements *= dimension
        if elements == 0:
            return 0
        elements = min(elements, ceiling)
    return elements


def _offsets(name: str, offsets: object, present: bool, data_size: int,
             issues: _Issues) -> _Span | None:
    if not present:
        return None
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(_is_count(value) for value in offsets)):
        issues.add("bad-offsets", "data_offsets are not two non-negative integers",
                   f"tensor {name!r} has data_offsets {_short(offsets)}", tensor=name)
        return None
    begin, end = offsets
    if begin > end:
        issues.add("reversed-offsets", "data_offsets end before they begin",
                   f"tensor {name!r} has data_offsets [{begin}, {end}]", tensor=name)
        return None
    if end > data_size:
        issues.add("offsets-past-end", "Tensor extends past the data region",
                   f"tensor {name!r} ends at byte {end} of a {data_size}-byte data region",
                   tensor=name, evidence={"end": end, "data_bytes": data_size})
        return None
    return _Span(name, begin, end)


def _check_layout(spans: list[_Span], data_size: int, issues: _Issues) -> None:
    """Every byte of the data region must belong to exactly one tensor."""
    covered = 0
    owner: _Span | None = None
    for span in sorted((s for s in spans if s.end > s.begin),
                       key=lambda s: (s.begin, s.end, s.name)):
        if owner is not None and span.begin < covered:
            first, second = sorted((owner.name, span.name))
            shared = min(covered, span.end) - span.begin
            issues.add("overlap", "Tensors overlap",
                       f"tensors {first!r} and {second!r} share {shared} bytes of data",
                       tensor=f"{first}/{second}",
                       pointer=f"tensors {first[:200]!r} and {second[:200]!r}",
                       evidence={"tensors": [first, second], "shared_bytes": shared})
        elif span.begin > covered:
            issues.add("gap", "Unreferenced bytes between tensors",
                       f"{span.begin - covered} bytes before tensor {span.name!r} belong to no "
                       "tensor: room for a hidden payload", tensor=span.name,
                       evidence={"unreferenced_bytes": span.begin - covered})
        if span.end > covered:
            covered, owner = span.end, span
    _check_empty(spans, issues)
    if covered < data_size:
        after = f" after tensor {owner.name!r}" if owner is not None else ""
        issues.add("trailing-bytes", "Unreferenced bytes after the last tensor",
                   f"{data_size - covered} bytes at the end of the data region{after} belong "
                   "to no tensor: room for a hidden payload",
                   tensor=owner.name if owner is not None else None,
                   evidence={"unreferenced_bytes": data_size - covered})


def _check_empty(spans: list[_Span], issues: _Issues) -> None:
    """An empty tensor may sit at any boundary, but not strictly inside another tensor."""
    filled = sorted((s for s in spans if s.end > s.begin), key=lambda s: (s.begin, s.end))
    begins = [span.begin for span in filled]
    reach: list[int] = []  # the furthest end among the spans sorted up to each index
    for span in filled:
        reach.append(max(span.end, reach[-1]) if reach else span.end)
    for span in spans:
        if span.end != span.begin:
            continue
        index = bisect.bisect_left(begins, span.begin) - 1
        if index >= 0 and reach[index] > span.begin:
            issues.add("empty-inside", "Empty tensor placed inside another tensor",
                       f"empty tensor {span.name!r} sits at byte {span.begin}, inside another "
                       "tensor's bytes; loaders reject the layout", tensor=span.name)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
             float: "number", type(None): "null"}
    for kind, label in names.items():
        if isinstance(value, kind):
            return label
    return type(value).__name__


def _short(value: object) -> str:
    """A short rendering of a header value, without serializing a huge or deep one."""
    if isinstance(value, list):
        shown = [_short_scalar(item) for item in value[:6]]
        return "[" + ", ".join(shown) + (", ..." if len(value) > 6 else "") + "]"
    return _short_scalar(value)


def _short_scalar(value: object) -> str:
    if isinstance(value, (dict, list)):
        return f"<{_json_type(value)}>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

