"""Strings in pickle and joblib streams, with their object paths, read without unpickling.

The walk reuses the symbolic machinery of :mod:`mlaudit.scanners.pickle` (``genops`` with
large arguments skipped, a symbolic stack and memo, joblib's array framing) and adds what
finding strings needs: lists, sets and dictionaries that keep their items through
``APPEND(S)``, ``ADDITEMS`` and ``SETITEM(S)`` (onto plain containers and onto objects of
list or dict subclasses), ``BUILD`` states kept on each object, and NumPy string arrays
decoded from their raw bytes: ``_reconstruct`` states (protocols 0-4, ``_codecs.encode`` in
protocol 2), ``_frombuffer`` (protocol 5) and joblib's raw array payloads, object arrays in
joblib's nested pickles included. When the stream is complete, the object graph is walked
from each pickle's root, naming paths the way Python code would reach them:
``steps[0][1].vocabulary_``.

A stream that breaks part-way still yields the strings read before the break (a loader
would have built them too), with a problem noted.
"""

from __future__ import annotations

import io
import mmap
import pickletools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import numpy as np

from mlaudit.pii.strings import (
    DEFAULT_MAX_STRINGS,
    MAX_STRINGS,
    ArtifactStrings,
    StringCollector,
    attribute_segment,
)
from mlaudit.scanners.pickle import (
    DTYPE_GLOBALS,
    MARK,
    MAX_MEMO,
    MAX_STACK,
    MEMO_OPS,
    UNKNOWN,
    Call,
    Frame,
    Global,
    StreamError,
    apply_container_op,
    apply_memo,
    builds_joblib_wrapper,
    iter_ops,
    joblib_array_layout,
)

_STRING_DTYPE: Final = re.compile(r"^[<>|=]?[US]\d{1,6}$")
_SET_GLOBALS: Final = frozenset(
    {"builtins.set", "builtins.frozenset", "__builtin__.set", "__builtin__.frozenset"}
)
_RECONSTRUCT: Final = frozenset(
    {"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"}
)
_FROMBUFFER: Final = frozenset(
    {"numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer"}
)
_CODECS_ENCODE: Final = "_codecs.encode"
_MAX_ARRAY_BYTES: Final = 256 * 1024**2
_MAX_NESTING: Final = 32
_CHECK_EVERY: Final = 65_536


class _Items:
    """Items appended or set onto an object of a list or dict subclass (an OrderedDict...)."""

    def __init__(self) -> None:
        self.sequence: list[object] = []
        self.mapping: dict[object, object] = {}


class _Walker:
    """Builds the symbolic object graph of each pickle in one stream."""

    def __init__(self, stream: IO[bytes], size: int, deadline: float, depth: int = 0) -> None:
        self._stream = stream
        self._size = size
        self._deadline = deadline
        self._depth = depth
        self.items: dict[int, tuple[Call, _Items]] = {}
        self.problems: list[str] = []

    def roots(self) -> list[object]:
        """The root object of every pickle in the stream (partial ones after a break)."""
        found: list[object] = []
        while self._stream.tell() < self._size:
            frame = Frame()
            try:
                found.append(self.walk_one(frame))
            except StreamError as error:
                self.problems.append(f"the stream breaks at byte {error.offset}: {error}")
                found.extend(item for item in frame.stack if item is not MARK)
                break
        return found

    def walk_one(self, frame: Frame) -> object:
        for count, (opcode, arg, pos) in enumerate(iter_ops(self._stream, self._size)):
            offset = pos if pos is not None else -1
            if opcode.name == "STOP":
                return frame.pop()
            self._step(opcode, arg, offset, frame)
            if count % _CHECK_EVERY == 0:
                self._check_limits(frame, offset)
        # iter_ops raises when the data ends before STOP, so the loop only ends by returning.
        raise AssertionError("unreachable")

    def _check_limits(self, frame: Frame, pos: int) -> None:
        if len(frame.stack) > MAX_STACK or len(frame.memo) > MAX_MEMO:
            raise StreamError("the stack or memo grows past the reader's limits", pos)
        if time.monotonic() > self._deadline:
            raise StreamError("reading ran past its time budget", pos)

    def _step(self, opcode: pickletools.OpcodeInfo, arg: object, pos: int, frame: Frame) -> None:
        name = opcode.name
        if name in ("PROTO", "FRAME"):
            return
        if name in MEMO_OPS:
            apply_memo(name, arg, pos, frame)
        elif name in ("GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4"):
            self._global(name, arg, frame)
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"):
            self._call(name, frame)
        elif name == "BUILD":
            self._build(frame, pos)
        elif name in ("APPEND", "APPENDS", "ADDITEMS"):
            items = frame.pop_to_mark() if name != "APPEND" else [frame.pop()]
            self._add(frame.top(), items)
        elif name in ("SETITEM", "SETITEMS"):
            items = frame.pop_to_mark() if name == "SETITEMS" else [frame.pop(), frame.pop()][::-1]
            self._set(frame.top(), items)
        elif name in ("EMPTY_SET", "FROZENSET"):
            frame.stack.append(frame.pop_to_mark() if name == "FROZENSET" else [])
        else:
            apply_container_op(opcode, arg, frame)

    def _global(self, name: str, arg: object, frame: Frame) -> None:
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            target = Global(module, attr)
            frame.stack.append(
                Call(target, tuple(frame.pop_to_mark())) if name == "INST" else target
            )
        elif name == "STACK_GLOBAL":
            name_value, module_value = frame.pop(), frame.pop()
            if isinstance(module_value, str) and isinstance(name_value, str):
                frame.stack.append(Global(module_value, name_value))
            else:
                frame.stack.append(UNKNOWN)
        else:
            frame.stack.append(UNKNOWN)

    def _call(self, name: str, frame: Frame) -> None:
        if name == "OBJ":
            items = frame.pop_to_mark()
            frame.stack.append(Call(items[0], tuple(items[1:])) if items else UNKNOWN)
            return
        if name == "NEWOBJ_EX":
            frame.pop()  # keyword arguments
        args = frame.pop()
        func = frame.pop()
        frame.stack.append(_reduced(func, args))

    def _build(self, frame: Frame, pos: int) -> None:
        state = frame.pop()
        target = frame.top()
        if not isinstance(target, Call):
            return
        target.state = state
        if _qualified(target.func) in _RECONSTRUCT:
            target.state = _array_items(state)
        elif builds_joblib_wrapper(target):
            target.state = self._joblib_array(target, pos)

    def _add(self, target: object, items: list[object]) -> None:
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, Call):
            self._items_of(target).sequence.extend(items)

    def _set(self, target: object, items: list[object]) -> None:
        if isinstance(target, dict):
            mapping = target
        elif isinstance(target, Call):
            mapping = self._items_of(target).mapping
        else:
            return
        for key, value in zip(items[::2], items[1::2], strict=False):
            if isinstance(key, str | bytes | int | float | bool | None):
                mapping[key] = value

    def _items_of(self, call: Call) -> _Items:
        entry = self.items.get(id(call))
        if entry is None:
            entry = self.items[id(call)] = (call, _Items())
        return entry[1]

    def _joblib_array(self, wrapper: Call, pos: int) -> object:
        """Read the array joblib wrote after the wrapper: its strings, or its nested pickle."""
        layout = joblib_array_layout(wrapper.state)
        if layout is None:
            raise StreamError("a joblib array wrapper whose layout cannot be read", pos)
        nbytes, has_objects, aligned = layout
        if has_objects:
            if self._depth >= _MAX_NESTING:
                raise StreamError("joblib object arrays nested too deeply", pos)
            nested = _Walker(self._stream, self._size, self._deadline, self._depth + 1)
            nested.items = self.items
            root = nested.walk_one(Frame())
            self.problems.extend(nested.problems)
            return root
        if aligned:
            padding = self._stream.read(1)
            if not padding:
                raise StreamError("joblib array padding byte missing", pos)
            self._stream.seek(padding[0], io.SEEK_CUR)
        start = self._stream.tell()
        if start + nbytes > self._size:
            raise StreamError("a joblib array runs past the end of the data", start)
        state = wrapper.state
        dtype = _string_dtype(state.get("dtype") if isinstance(state, dict) else None)
        if dtype is None or nbytes > _MAX_ARRAY_BYTES:
            self._stream.seek(start + nbytes)
            return UNKNOWN
        return _decode(dtype, self._stream.read(nbytes))


def _qualified(value: object) -> str | None:
    return value.qualified_name if isinstance(value, Global) else None


def _reduced(func: object, args: object) -> object:
    """``func(*args)`` where the result is plain data a static reader may compute."""
    name = _qualified(func)
    arguments = args if isinstance(args, tuple) else ()
    if name in _SET_GLOBALS:
        return list(arguments[0]) if arguments and isinstance(arguments[0], list) else []
    if name == _CODECS_ENCODE and len(arguments) == 2 and isinstance(arguments[0], str):
        # Protocol 2 spells bytes as _codecs.encode(text, "latin1").
        try:
            return arguments[0].encode("latin-1")
        except UnicodeEncodeError:
            return UNKNOWN
    if name in _FROMBUFFER:
        buffer = arguments[0] if arguments else None
        dtype = _string_dtype(arguments[1]) if len(arguments) > 1 else None
        if dtype is None or not isinstance(buffer, bytes | bytearray):
            return UNKNOWN  # a numeric array
        return _decode(dtype, bytes(buffer))
    return Call(func, args)


def _array_items(state: object) -> object:
    """The elements of an ``ndarray.__setstate__`` tuple: objects, or decoded strings."""
    if not isinstance(state, tuple) or len(state) != 5:
        return UNKNOWN
    data = state[4]
    if isinstance(data, list):
        return data
    if isinstance(data, str):  # protocol 0-1 write the raw bytes as a latin-1 str
        try:
            data = data.encode("latin-1")
        except UnicodeEncodeError:
            return UNKNOWN
    dtype = _string_dtype(state[2])
    if dtype is None or not isinstance(data, bytes):
        return UNKNOWN
    return _decode(dtype, data)


def _string_dtype(value: object) -> np.dtype[np.generic] | None:
    """The NumPy dtype of a pickled ``numpy.dtype(code, ...)`` call when it holds text."""
    if not isinstance(value, Call) or not isinstance(value.args, tuple) or not value.args:
        return None
    code = value.args[0]
    if not isinstance(code, str) or not _STRING_DTYPE.match(code):
        return None
    state = value.state
    order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
    if order not in ("<", ">", "|", "="):
        return None
    # Parsing a text type code is metadata work in NumPy; it executes nothing.
    return np.dtype((order if order != "|" else "") + code.lstrip("<>|="))


def _decode(dtype: np.dtype[np.generic], data: bytes) -> object:
    if dtype.itemsize == 0 or len(data) % dtype.itemsize:
        return UNKNOWN
    values = np.frombuffer(data, dtype=dtype)
    if dtype.kind == "S":
        return [bytes(v).decode("utf-8", "replace") for v in values[:MAX_STRINGS]]
    return [str(v) for v in values[:MAX_STRINGS]]


def _attribute_state(state: object) -> dict[object, object] | None:
    """An object's attributes: its state dict, or the dict part of (dict, slots)."""
    if isinstance(state, dict):
        return state
    if isinstance(state, tuple) and len(state) == 2:
        merged: dict[object, object] = {}
        for part in state:
            if isinstance(part, dict):
                merged.update(part)
        return merged
    return None


def _children(
    value: object, path: str, items: dict[int, tuple[Call, _Items]]
) -> Iterator[tuple[str, object]]:
    """(path, child) pairs of one node; a string child is held at its container's path."""
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield (path if isinstance(item, str) else f"{path}[{index}]"), item
    elif isinstance(value, dict):
        yield from _mapping_children(value, path)
    elif isinstance(value, Call) and _qualified(value.func) not in DTYPE_GLOBALS:
        attributes = _attribute_state(value.state)
        if attributes is not None:
            for index, (key, item) in enumerate(attributes.items()):
                segment = attribute_segment(key, index) if isinstance(key, str) else f"[#{index}]"
                yield f"{path}{segment}", item
        elif isinstance(value.state, list | tuple | Call):
            yield from _children(value.state, path, items)
        elif value.state is UNKNOWN:
            # No state: the data is in the arguments (pandas' _new_Index(cls, {"data": ...})).
            for index, argument in enumerate(value.args if isinstance(value.args, tuple) else ()):
                yield f"{path}({index})", argument
        extra = items.get(id(value))
        if extra is not None:
            yield from _children(extra[1].sequence, path, items)
            yield from _mapping_children(extra[1].mapping, path)


def _mapping_children(mapping: dict[object, object], path: str) -> Iterator[tuple[str, object]]:
    for index, (key, item) in enumerate(mapping.items()):
        if isinstance(key, str):
            yield path, key
        yield (path if isinstance(item, str) else f"{path}[#{index}]"), item


def _collect(roots: list[object], walker: _Walker, collector: StringCollector) -> None:
    """Each object once (iteratively, so linear in the graph); strings past the collector's
    cap are still counted, so the result says how many were left unread."""
    seen: set[int] = set()
    pending: list[tuple[str, object]] = [
        ("" if index == 0 else f"<pickle {index + 1}>", root) for index, root in enumerate(roots)
    ]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            collector.add(path, value)
            continue
        if not isinstance(value, list | tuple | dict | Call) or id(value) in seen:
            continue
        seen.add(id(value))
        # Reversed, so that the stack pops children in their natural order.
        pending.extend(reversed(list(_children(value, path, walker.items))))


def strings_in_stream(
    stream: IO[bytes], size: int, *, time_budget_s: float, max_strings: int = DEFAULT_MAX_STRINGS
) -> ArtifactStrings:
    """Strings of every pickle from the stream's position to ``size``, the first
    ``max_strings`` kept (the rest counted as unread)."""
    walker = _Walker(stream, size, time.monotonic() + time_budget_s)
    collector = StringCollector(limit=max_strings)
    try:
        roots = walker.roots()
    except RecursionError:
        roots = []
        walker.problems.append("structure nested too deeply to read")
    collector.problems.extend(walker.problems)
    _collect(roots, walker, collector)
    return collector.result()


def strings_in_bytes(
    data: bytes, *, time_budget_s: float = 60.0, max_strings: int = DEFAULT_MAX_STRINGS
) -> ArtifactStrings:
    return strings_in_stream(
        io.BytesIO(data), len(data), time_budget_s=time_budget_s, max_strings=max_strings
    )


def strings_in_file(
    path: Path, *, time_budget_s: float = 60.0, max_strings: int = DEFAULT_MAX_STRINGS
) -> ArtifactStrings:
    """Read through a read-only memory map: large files are not copied into memory."""
    size = path.stat().st_size
    if size == 0:
        return ArtifactStrings((), 0, problems=("the file is empty",))
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        return strings_in_stream(
            view, size, time_budget_s=time_budget_s, max_strings=max_strings  # type: ignore[arg-type]
        )
