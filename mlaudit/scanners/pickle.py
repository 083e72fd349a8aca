"""Static analysis of pickle streams: which globals would unpickling import, and where.

Nothing here unpickles. The walk is built on the standard library's ``pickletools.genops``
(the reference decoder of every opcode of protocols 0-5) and adds what genops lacks: a small
symbolic stack and memo, so that imports whose names are assembled on the stack
(``STACK_GLOBAL`` fed through ``BINGET``) are resolved, and so that joblib's framing, where raw
array bytes or a nested pickle sit between opcodes, is skipped exactly as joblib's unpickler
would skip it.

The building blocks (:func:`iter_ops`, the symbolic :class:`Frame`, :class:`Global` and
:class:`Call`, :func:`apply_memo`, :func:`apply_container_op`, :func:`joblib_array_layout`,
:func:`builds_joblib_wrapper`) are public because ``mlaudit.pii.pickle_strings`` walks the
same streams for the strings they hold.
"""

from __future__ import annotations

import contextlib
import io
import math
import mmap
import pickletools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import numpy as np

from mlaudit.scanners.pickle_policy import Verdict, classify

MARK: Final = object()
UNKNOWN: Final = object()

JOBLIB_ARRAY_WRAPPER: Final = "joblib.numpy_pickle.NumpyArrayWrapper"
DTYPE_GLOBALS: Final = frozenset(
    {"numpy.dtype", "numpy.core.multiarray.dtype", "numpy._core.multiarray.dtype"}
)
_FLEXIBLE_KINDS: Final = frozenset("SUVa")
_MAX_NESTED_ARRAYS: Final = 32
MAX_STACK: Final = 1_000_000
MAX_MEMO: Final = 10_000_000
_CHECK_EVERY: Final = 65_536
DEFAULT_SCAN_SECONDS: Final = 300.0
_DTYPE_CODE: Final = re.compile(r"^[<>|=]?[?bBhHiIlLqQpPefdgFDGmMOSUVcua]\d*(\[\w+\])?$")
_NPY_ITEM_HASOBJECT: Final = 0x01


class MalformedPickle(ValueError):
    """The stream is not a pickle at all, or its first pickle is truncated or corrupt."""

    def __init__(self, message: str, offset: int, imports_before: tuple[GlobalImport, ...]):
        super().__init__(message)
        self.offset = offset
        self.imports_before = imports_before


class QualifiedName:
    """Mixin for records that name a global as ``module`` plus ``name``.

    The unpickler resolves dotted names attribute by attribute, so ("joblib",
    "numpy_pickle.NumpyArrayWrapper") is the same object as the usual spelling: compare
    qualified names, never the parts.
    """

    module: str
    name: str

    @property
    def qualified_name(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class GlobalImport(QualifiedName):
    """One global that unpickling would import (and may then call)."""

    module: str
    name: str
    offset: int
    opcode: str
    pickle_index: int


@dataclass(frozen=True)
class ScanProblem:
    """A part of the stream the scanner could not vouch for; the load gate treats it as unsafe."""

    kind: str
    offset: int
    message: str


@dataclass(frozen=True)
class PickleScan:
    imports: tuple[GlobalImport, ...]
    problems: tuple[ScanProblem, ...]
    pickles: int
    protocol: int
    joblib_arrays: int
    size: int

    @property
    def is_joblib(self) -> bool:
        return self.joblib_arrays > 0 or any(
            i.qualified_name == JOBLIB_ARRAY_WRAPPER for i in self.imports
        )


@dataclass(eq=False)
class Global(QualifiedName):
    module: str
    name: str


@dataclass(eq=False)
class Call:
    """The result of REDUCE/NEWOBJ/OBJ/INST: a callable applied to arguments, plus BUILD state."""

    func: object
    args: object
    state: object = field(default=UNKNOWN)


class _Walker:
    """Walks one file (or buffer) holding one or more consecutive pickles."""

    def __init__(
        self,
        stream: IO[bytes],
        size: int,
        *,
        joblib_framing: bool = True,
        depth: int = 0,
        deadline: float | None = None,
    ) -> None:
        self._deadline = deadline
        self._stream = stream
        self._size = size
        self._joblib_framing = joblib_framing
        self._depth = depth
        self.imports: list[GlobalImport] = []
        self.problems: list[ScanProblem] = []
        self.protocol = 0
        self.joblib_arrays = 0
        self._pickle_index = 0

    def run(self) -> int:
        """Walk every pickle in the stream; returns how many were found."""
        try:
            self._walk_one()
        except StreamError as error:
            raise MalformedPickle(str(error), error.offset, tuple(self.imports)) from None
        count = 1
        while self._stream.tell() < self._size:
            self._pickle_index = count
            start = self._stream.tell()
            try:
                self._walk_one()
            except StreamError as error:
                self.problems.append(
                    ScanProblem(
                        "trailing-data",
                        start,
                        f"{self._size - start} bytes after the last complete pickle do not parse "
                        f"as a pickle ({error}); a custom loader could still read them",
                    )
                )
                return count
            count += 1
        return count

    def _walk_one(self) -> None:
        frame = Frame()
        for count, (opcode, arg, pos) in enumerate(iter_ops(self._stream, self._size)):
            self._step(opcode, arg, pos if pos is not None else -1, frame)
            if opcode.name == "STOP":
                return
            if count % _CHECK_EVERY == 0:
                self._check_limits(frame, pos if pos is not None else -1)

    def _check_limits(self, frame: Frame, pos: int) -> None:
        """Bound time and memory: a hostile stream must not hang or exhaust the scanner."""
        if len(frame.stack) > MAX_STACK or len(frame.memo) > MAX_MEMO:
            raise StreamError("the stack or memo grows past the scanner's limits", pos)
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise StreamError("scanning ran past its time budget", pos)

    def _step(self, opcode: pickletools.OpcodeInfo, arg: object, pos: int, frame: Frame) -> None:
        name = opcode.name
        if name == "PROTO":
            self.protocol = max(self.protocol, _int(arg))
        elif name in _IMPORT_OPS:
            self._import(name, arg, pos, frame)
        elif name in MEMO_OPS:
            apply_memo(name, arg, pos, frame)
        elif name in _CALL_OPS:
            self._call(name, pos, frame)
        elif name not in ("FRAME", "STOP"):
            apply_container_op(opcode, arg, frame)

    def _import(self, name: str, arg: object, pos: int, frame: Frame) -> None:
        stack = frame.stack
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            self._record(module, attr, pos, name)
            target = Global(module, attr)
            if name == "INST":
                stack.append(Call(target, tuple(frame.pop_to_mark())))
            else:
                stack.append(target)
            return
        if name == "STACK_GLOBAL":
            attr_value = frame.pop()
            module_value = frame.pop()
            if isinstance(module_value, str) and isinstance(attr_value, str):
                self._record(module_value, attr_value, pos, name)
                stack.append(Global(module_value, attr_value))
                return
            problem = ScanProblem(
                "dynamic-import",
                pos,
                "STACK_GLOBAL imports a name that is computed at load time, "
                "so it cannot be checked without running the pickle",
            )
        else:
            problem = ScanProblem(
                "extension-import",
                pos,
                f"{name} imports whatever the copyreg extension registry maps code {arg} "
                "to in the loading process",
            )
        self.problems.append(problem)
        stack.append(UNKNOWN)

    def _call(self, name: str, pos: int, frame: Frame) -> None:
        if name == "OBJ":
            items = frame.pop_to_mark()
            frame.stack.append(Call(items[0], tuple(items[1:])) if items else UNKNOWN)
            return
        if name == "BUILD":
            state = frame.pop()
            target = frame.stack[-1] if frame.stack else UNKNOWN
            if isinstance(target, Call):
                target.state = state
                if self._joblib_framing:
                    self._after_build(target, pos)
            return
        if name == "NEWOBJ_EX":
            frame.pop()  # keyword arguments
        args = frame.pop()
        func = frame.pop()
        frame.stack.append(Call(func, args))

    def _after_build(self, target: Call, pos: int) -> None:
        built = builds_joblib_wrapper(target)
        if built is None:
            self.problems.append(
                ScanProblem(
                    "joblib-framing",
                    pos,
                    "a joblib array wrapper built in a way the scanner cannot follow",
                )
            )
        elif built:
            self._skip_joblib_array(target, pos)

    def _record(self, module: str, name: str, pos: int, opcode: str) -> None:
        self.imports.append(GlobalImport(module, name, pos, opcode, self._pickle_index))

    def _skip_joblib_array(self, wrapper: Call, pos: int) -> None:
        """Step over the array payload joblib writes right after a NumpyArrayWrapper."""
        layout = joblib_array_layout(wrapper.state)
        if layout is None:
            self.problems.append(
                ScanProblem(
                    "joblib-framing",
                    pos,
                    "a joblib array wrapper whose dtype or shape cannot be read statically; "
                    "the bytes after it were not checked",
                )
            )
            raise StreamError("unreadable joblib array framing", pos)
        self.joblib_arrays += 1
        nbytes, has_objects, aligned = layout
        if has_objects:
            # joblib writes object arrays as a nested pickle: walk it like any other.
            if self._depth >= _MAX_NESTED_ARRAYS:
                raise StreamError("joblib object arrays nested too deeply", pos)
            nested = _Walker(
                self._stream, self._size, depth=self._depth + 1, deadline=self._deadline
            )
            nested._pickle_index = self._pickle_index
            nested._walk_one()
            self.imports.extend(nested.imports)
            self.problems.extend(nested.problems)
            self.joblib_arrays += nested.joblib_arrays
            return
        start = self._stream.tell()
        if aligned:
            padding = self._stream.read(1)
            if not padding:
                raise StreamError("joblib array padding byte missing", start)
            self._stream.seek(padding[0], io.SEEK_CUR)
        end = self._stream.tell() + nbytes
        if end > self._size:
            raise StreamError(
                f"joblib array of {nbytes} bytes runs past the end of the file", start
            )
        self._stream.seek(end)


_IMPORT_OPS: Final = frozenset({"GLOBAL", "INST", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4"})
MEMO_OPS: Final = frozenset(
    {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET"}
)
_CALL_OPS: Final = frozenset({"REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "BUILD"})


@dataclass
class Frame:
    """The symbolic state of one pickle: its stack, mark positions and memo."""

    stack: list[object] = field(default_factory=list)
    marks: list[int] = field(default_factory=list)
    memo: dict[int, object] = field(default_factory=dict)

    def pop(self) -> object:
        if not self.stack:
            return UNKNOWN
        value = self.stack.pop()
        return UNKNOWN if value is MARK else value

    def pop_to_mark(self) -> list[object]:
        if not self.marks:
            return []
        start = self.marks.pop()
        items = self.stack[start + 1 :]
        del self.stack[start:]
        return items

    def top(self) -> object:
        return self.stack[-1] if self.stack else UNKNOWN


def _int(arg: object) -> int:
    assert isinstance(arg, int)
    return arg


def apply_memo(name: str, arg: object, pos: int, frame: Frame) -> None:
    if name == "MEMOIZE":
        frame.memo[len(frame.memo)] = frame.top()
    elif name.endswith("PUT"):
        frame.memo[_int(arg)] = frame.top()
    else:
        key = _int(arg)
        if key not in frame.memo:
            raise StreamError(f"memo key {key} read before it is written", pos)
        frame.stack.append(frame.memo[key])


def apply_container_op(opcode: pickletools.OpcodeInfo, arg: object, frame: Frame) -> None:
    """Constants, tuples, lists and dicts are tracked by value; other opcodes by stack effect."""
    name, stack = opcode.name, frame.stack
    if name in CONSTANT_OPS:
        stack.append(constant(name, arg))
    elif name == "EMPTY_TUPLE":
        stack.append(())
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        items = [frame.pop() for _ in range(int(name[-1]))]
        stack.append(tuple(reversed(items)))
    elif name in ("TUPLE", "LIST"):
        items = frame.pop_to_mark()
        stack.append(tuple(items) if name == "TUPLE" else items)
    elif name in ("EMPTY_LIST", "EMPTY_DICT"):
        stack.append([] if name == "EMPTY_LIST" else {})
    elif name == "DICT":
        stack.append(_pairs_to_dict(frame.pop_to_mark()))
    elif name in ("SETITEM", "SETITEMS"):
        items = frame.pop_to_mark() if name == "SETITEMS" else [frame.pop(), frame.pop()][::-1]
        for key, value in zip(items[::2], items[1::2], strict=False):
            _set_item(stack, key, value)
    elif name == "POP":
        if stack and stack[-1] is MARK:
            frame.marks.pop()
        frame.pop()
    elif name == "POP_MARK":
        frame.pop_to_mark()
    elif name == "DUP":
        stack.append(frame.top())
    elif name == "MARK":
        frame.marks.append(len(stack))
        stack.append(MARK)
    else:
        _apply_stack_effect(opcode, frame)


def _apply_stack_effect(opcode: pickletools.OpcodeInfo, frame: Frame) -> None:
    """Model any other opcode by its documented stack effect, values unknown."""
    before = list(opcode.stack_before)
    if pickletools.markobject in before:
        frame.pop_to_mark()
        before = before[: before.index(pickletools.markobject)]
    for _ in before:
        frame.pop()
    frame.stack.extend(UNKNOWN for _ in opcode.stack_after)


class StreamError(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


_LENGTH_PREFIXED: Final = {
    # opcode byte -> (name, width of its little-endian length field)
    b"B": ("BINBYTES", 4), b"\x8e": ("BINBYTES8", 8), b"\x96": ("BYTEARRAY8", 8),
    b"X": ("BINUNICODE", 4), b"\x8d": ("BINUNICODE8", 8), b"T": ("BINSTRING", 4),
}
_OPCODES_BY_NAME: Final = {op.name: op for op in pickletools.opcodes}
LARGE_ARGUMENT_BYTES: Final = 1 << 20


class _Large:
    """A bytes or text argument too long to be a name: skipped, never read into memory."""


_LARGE_VALUE: Final = _Large()


def _skip_large_argument(stream: IO[bytes], size: int) -> tuple[pickletools.OpcodeInfo, int] | None:
    """Step over a length-prefixed argument of LARGE_ARGUMENT_BYTES or more without reading it.

    ``genops`` reads every argument into memory; a declared length of gigabytes (real, in a
    big array, or a lie) would cost that much memory. Returns the opcode and its offset when
    it skipped one, None to let ``genops`` decode the next opcode.
    """
    position = stream.tell()
    code = stream.read(1)
    spec = _LENGTH_PREFIXED.get(code)
    if spec is None:
        stream.seek(position)
        return None
    name, width = spec
    field = stream.read(width)
    length = int.from_bytes(field, "little", signed=False) if len(field) == width else 0
    if length < LARGE_ARGUMENT_BYTES:
        stream.seek(position)
        return None
    end = position + 1 + width + length
    if end > size:
        raise StreamError(f"{name} declares {length} bytes, past the end of the data", position)
    stream.seek(end)
    return _OPCODES_BY_NAME[name], position


def iter_ops(
    stream: IO[bytes], size: int
) -> Iterator[tuple[pickletools.OpcodeInfo, object, int | None]]:
    """``pickletools.genops`` with large arguments skipped and errors given offsets."""
    operations = pickletools.genops(stream)
    while True:
        position = stream.tell()
        skipped = _skip_large_argument(stream, size)
        if skipped is not None:
            yield skipped[0], _LARGE_VALUE, skipped[1]
            continue
        try:
            item = next(operations)
        except StopIteration:
            raise StreamError("pickle ended without a STOP opcode", position) from None
        except ValueError as error:
            raise StreamError(str(error), position) from None
        yield item
        if item[0].name == "STOP":
            return


CONSTANT_OPS: Final = frozenset(
    {
        "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
        "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
        "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
        "FLOAT", "BINFLOAT", "NONE", "NEWTRUE", "NEWFALSE",
    }
)


def constant(name: str, arg: object) -> object:
    return {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}.get(name, arg)


def _pairs_to_dict(items: list[object]) -> object:
    result: dict[object, object] = {}
    for key, value in zip(items[::2], items[1::2], strict=False):
        if not _hashable(key):
            return UNKNOWN
        result[key] = value
    return result


def _set_item(stack: list[object], key: object, value: object) -> None:
    if stack and isinstance(stack[-1], dict) and _hashable(key):
        stack[-1][key] = value


def _hashable(value: object) -> bool:
    return isinstance(value, (str, bytes, int, float, bool, type(None)))


def _is_wrapper_class(value: object) -> bool:
    return isinstance(value, Global) and value.qualified_name == JOBLIB_ARRAY_WRAPPER


def _first_argument(call: Call) -> object:
    return call.args[0] if isinstance(call.args, tuple) and call.args else None


def builds_joblib_wrapper(call: Call) -> bool | None:
    """Whether BUILD is about to complete a NumpyArrayWrapper, after which joblib reads raw bytes.

    joblib checks the built object with ``isinstance``, so any call that could return an
    instance counts: the class itself, any function given the class as first argument
    (``copyreg._reconstructor``, Cython ``newObj`` helpers), and a call of such a call
    (``functools.partial(cls)()``). None when the class is passed anywhere else: a
    construction a static reader cannot follow.
    """
    func = call.func
    if _is_wrapper_class(func) or _is_wrapper_class(_first_argument(call)):
        return True
    if isinstance(func, Call) and _is_wrapper_class(_first_argument(func)):
        return True
    args = call.args if isinstance(call.args, tuple) else ()
    if any(_is_wrapper_class(arg) for arg in args[1:]):
        return None
    return False


def joblib_array_layout(state: object) -> tuple[int, bool, bool] | None:
    """(payload bytes, holds Python objects, has an alignment padding byte), or None."""
    if not isinstance(state, dict):
        return None
    shape = state.get("shape")
    dtype = state.get("dtype")
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        return None
    itemsize_and_objects = _dtype_layout(dtype)
    if itemsize_and_objects is None:
        return None
    itemsize, has_objects = itemsize_and_objects
    aligned = state.get("numpy_array_alignment_bytes") is not None
    return math.prod(shape) * itemsize, has_objects, aligned


def _dtype_layout(dtype: object) -> tuple[int, bool] | None:
    """Item size and object-ness of a pickled ``numpy.dtype(code, align, copy)`` call.

    numpy takes the item size from the pickled state only for flexible kinds (S, U, V); a
    state that disagrees with the code is refused rather than guessed, because a guess that
    differs from numpy's shifts every later opcode.
    """
    if not isinstance(dtype, Call) or not isinstance(dtype.func, Global):
        return None
    if dtype.func.qualified_name not in DTYPE_GLOBALS:
        return None
    args = dtype.args
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str):
        return None
    code = args[0]
    if not _DTYPE_CODE.match(code):
        return None
    try:
        # Parsing a short type code is pure metadata work in numpy; it executes nothing.
        parsed = np.dtype(code)
    except (TypeError, ValueError):
        return None
    state = dtype.state
    flags = state[7] if isinstance(state, tuple) and len(state) >= 8 else 0
    elsize = state[5] if isinstance(state, tuple) and len(state) >= 6 else -1
    if not isinstance(flags, int) or not isinstance(elsize, int):
        return None
    if parsed.kind not in _FLEXIBLE_KINDS:
        if bool(flags & _NPY_ITEM_HASOBJECT) != parsed.hasobject:
            return None
        return parsed.itemsize, parsed.hasobject
    itemsize = parsed.itemsize or elsize
    if (elsize > 0 and itemsize != elsize) or itemsize <= 0:
        return None
    return itemsize, bool(flags & _NPY_ITEM_HASOBJECT)


def _plain_pickle_view(
    stream: IO[bytes], start: int, size: int, deadline: float
) -> list[GlobalImport]:
    """Imports that ``pickle.load`` would meet if it ignored joblib's framing.

    joblib reads array bytes raw, but ``pickle.load`` on the same file runs them as opcodes,
    so a file is only as safe as the worse of the two readings.
    """
    stream.seek(start)
    walker = _Walker(stream, size, joblib_framing=False, deadline=deadline)
    # One pickle.load call: it returns at the first STOP it meets, or raises where the bytes
    # stop decoding, having run only what was recorded up to there.
    with contextlib.suppress(StreamError):
        walker._walk_one()
    return walker.imports


def scan_stream(
    stream: IO[bytes], size: int, *, time_budget_s: float = DEFAULT_SCAN_SECONDS
) -> PickleScan:
    """Scan the pickles from the stream's position to ``size`` (an absolute end offset).

    Raises :class:`MalformedPickle` when the first pickle cannot be walked: truncated,
    corrupt, or past the time and memory limits that keep a hostile file from exhausting the
    scanner.
    """
    start = stream.tell()
    deadline = time.monotonic() + time_budget_s
    walker = _Walker(stream, size, deadline=deadline)
    try:
        count = walker.run()
    except RecursionError:
        raise MalformedPickle("structure nested too deeply to analyse", 0, ()) from None
    imports = list(walker.imports)
    if walker.joblib_arrays:
        # Only dangerous names count from this second reading: on a benign joblib file it
        # meets the nested object-array pickles with the outer memo and assembles junk names
        # that would simply fail to import.
        seen = {(i.module, i.name, i.offset) for i in imports}
        imports += [
            i
            for i in _plain_pickle_view(stream, start, size, deadline)
            if (i.module, i.name, i.offset) not in seen
            and classify(i.module, i.name).verdict is Verdict.DANGEROUS
        ]
    return PickleScan(
        imports=tuple(imports),
        problems=tuple(walker.problems),
        pickles=count,
        protocol=walker.protocol,
        joblib_arrays=walker.joblib_arrays,
        size=size,
    )


def scan_bytes(data: bytes, *, time_budget_s: float = DEFAULT_SCAN_SECONDS) -> PickleScan:
    return scan_stream(io.BytesIO(data), len(data), time_budget_s=time_budget_s)


def scan_file(path: Path, *, time_budget_s: float = DEFAULT_SCAN_SECONDS) -> PickleScan:
    """Scan a file through a read-only memory map, so multi-GB files are not read into memory."""
    with path.open("rb") as handle:
        size = path.stat().st_size
        if size == 0:
            raise MalformedPickle("the file is empty", 0, ())
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return scan_stream(mapped, size, time_budget_s=time_budget_s)  # type: ignore[arg-type]
