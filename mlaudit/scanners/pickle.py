"""Static analysis of pickle streams: which globals would unpickling import, and where.

**The principle.** The static scan is a sound over-approximation of what every real loader
does: ``pickle.load`` with the C unpickler, ``joblib.load`` (the pure-Python unpickler plus
``NumpyUnpickler``'s raw array reads), and the numpy and torch readers built on them. Every
global any of them could import is reported; whatever the scan cannot pin down exactly (a
name computed at load time, a joblib array whose position in the file is not certain, a numpy
dtype whose memory layout numpy would accept inconsistently, a stream past the scanner's
limits) is a :class:`ScanProblem`, which the load gate treats as unsafe. Never clean.

Nothing here unpickles. The walk is built on the standard library's ``pickletools.genops``
(the reference decoder of every opcode of protocols 0-5) and adds what genops lacks: a
symbolic stack, marks and memo with the exact stack discipline of the real unpicklers (so a
missing MARK, an underflow or an unwritten memo key stops the walk where the loader stops),
protocol 4 frames as the pure-Python unpickler reads them, and joblib's layout, where raw
array bytes or a nested pickle sit between opcodes.

joblib fails closed. ``NumpyUnpickler`` reads an array from the file handle right after any
``BUILD`` whose result is a ``NumpyArrayWrapper``, bypassing the frame buffer. The walker
accepts only the construction joblib's pickler writes (the literal class, ``NEWOBJ`` with no
arguments, or ``copyreg._reconstructor(cls, object, None)`` below protocol 2, then ``BUILD``
with a literal dict of the wrapper's attributes, ending exactly where its frame ends); any
other use of the class is unscannable and the joblib reading stops being followed.

Structural anomalies no real pickler writes (frames that split an opcode or overrun the data,
a late PROTO, values left on the stack at STOP, DUP, self-referencing keys, exponential memo
fan-out) are problems whose :attr:`ScanProblem.structural` is true: MLA107.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from mlaudit.scanners.dtype_safety import DtypeLayout, UnsafeDtype, layout_of
from mlaudit.scanners.pickle_policy import Verdict, classify

MARK: Final = object()
UNKNOWN: Final = object()

JOBLIB_ARRAY_WRAPPER: Final = "joblib.numpy_pickle.NumpyArrayWrapper"
DTYPE_GLOBALS: Final = frozenset(
    {"numpy.dtype", "numpy.core.multiarray.dtype", "numpy._core.multiarray.dtype"}
)
_RECONSTRUCTORS: Final = frozenset({"copyreg._reconstructor", "copy_reg._reconstructor"})
_OBJECT_CLASSES: Final = frozenset({"builtins.object", "__builtin__.object"})
_FROMBUFFER: Final = frozenset(
    {"numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer"}
)
# Array reconstructors whose BUILD state is (version, shape, dtype, is_fortran, rawdata, ...).
_ARRAY_STATES: Final = frozenset(
    {
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.ma.core._mareconstruct", "numpy.ndarray",
    }
)
_WRAPPER_KEYS: Final = frozenset(
    {"subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes"}
)
_WRAPPER_REQUIRED: Final = frozenset({"subclass", "shape", "order", "dtype"})
_MAX_NESTED_ARRAYS: Final = 32
_MAX_DTYPE_DEPTH: Final = 32
MAX_STACK: Final = 1_000_000
MAX_MEMO: Final = 10_000_000
# Expanded size (each shared reference counted every time) past which a structure is a
# memo expansion bomb rather than data.
MAX_EXPANDED: Final = 1 << 32
_CHECK_EVERY: Final = 65_536
DEFAULT_SCAN_SECONDS: Final = 300.0
_DTYPE_CODE: Final = re.compile(r"^[<>|=]?[?bBhHiIlLqQpPefdgFDGmMOSUVcua]\d*(\[\w+\])?$")
_HIGHEST_PROTOCOL: Final = 5

# Problem kinds that are structural anomalies of the stream (rule MLA107); the others are
# content the scan cannot vouch for (rule MLA101).
STRUCTURAL_KINDS: Final = frozenset(
    {
        "malformed", "unwritten-memo", "missing-mark", "stack-underflow", "stack-leftover",
        "late-proto", "frame-straddle", "frame-past-end", "frame-reopened",
        "stop-inside-frame", "impossible-structure", "expansion",
    }
)


class StreamError(Exception):
    """The stream stops here for every real loader (``kind`` says why, for the report)."""

    def __init__(self, message: str, offset: int, kind: str = "malformed") -> None:
        super().__init__(message)
        self.offset = offset
        self.kind = kind


class MalformedPickle(ValueError):
    """The first pickle of the stream breaks: it is not a pickle at all, or it stops part-way.

    ``partial`` is None when the first byte is not a pickle opcode (the data is not a
    pickle). Otherwise a loader starts on it and runs every opcode before the break, so
    ``partial`` is the scan up to there: its imports, and its problems with the break itself
    among them.
    """

    def __init__(
        self,
        message: str,
        offset: int,
        imports_before: tuple[GlobalImport, ...],
        partial: PickleScan | None = None,
    ):
        super().__init__(message)
        self.offset = offset
        self.imports_before = imports_before
        self.partial = partial


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

    @property
    def structural(self) -> bool:
        """A structural anomaly of the stream (MLA107) rather than unverifiable content."""
        return self.kind in STRUCTURAL_KINDS


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


# --------------------------------------------------------------------------------------------
# Guarded values: classes whose every use the walker must follow exactly. Each one is tracked
# on the stack; taking it anywhere but its canonical use is recorded as an escape.


@dataclass(eq=False)
class _GuardedGlobal(Global):
    """The joblib wrapper class or the numpy dtype class."""

    @property
    def is_wrapper(self) -> bool:
        return self.qualified_name == JOBLIB_ARRAY_WRAPPER


@dataclass(eq=False)
class _WrapperInstance(Call):
    """A NumpyArrayWrapper made the way joblib's pickler makes it, not yet built."""

    built: bool = False


class _ReconstructorArgs(tuple[object, ...]):
    """(NumpyArrayWrapper, object, None): the arguments of the protocol 0/1 construction."""


class _Recalled(str):
    """A string read back from the memo in a reading that may have lost its memo's meaning."""

    __slots__ = ()


class _MutableSet:
    """A set under construction (EMPTY_SET): unhashable, so never a key or a set member."""


_GUARDED_TYPES: Final = frozenset({_GuardedGlobal, _WrapperInstance, _ReconstructorArgs})


def _underflow() -> StreamError:
    return StreamError("unpickling stack underflow", -1, "stack-underflow")


@dataclass
class Frame:
    """The symbolic state of one pickle: its stack, mark positions and memo.

    The discipline is the real unpicklers': values are taken only from above the innermost
    MARK, and taking from an empty stack or a missing MARK stops the load. ``escaped`` lists
    guarded values taken by anything but their canonical use.
    """

    stack: list[object] = field(default_factory=list)
    marks: list[int] = field(default_factory=list)
    memo: dict[int, object] = field(default_factory=dict)
    live_guarded: int = 0
    escaped: list[object] = field(default_factory=list)

    def push(self, value: object) -> None:
        if type(value) in _GUARDED_TYPES:
            self.live_guarded += 1
        self.stack.append(value)

    def take(self) -> object:
        """Pop for a use the caller checks itself."""
        stack = self.stack
        if not stack or stack[-1] is MARK:
            raise _underflow()
        value = stack.pop()
        if type(value) in _GUARDED_TYPES:
            self.live_guarded -= 1
        return value

    def pop(self) -> object:
        value = self.take()
        if type(value) in _GUARDED_TYPES:
            self.escaped.append(value)
        return value

    def discard(self) -> None:
        """POP: drops the top value, or the innermost MARK when it is on top."""
        if self.stack and self.stack[-1] is MARK:
            self.stack.pop()
            self.marks.pop()
        else:
            self.take()

    def take_to_mark(self) -> list[object]:
        """Pop every value above the innermost MARK, and the MARK, for a checked use."""
        if not self.marks:
            raise StreamError("an opcode needs a MARK and there is none", -1, "missing-mark")
        start = self.marks.pop()
        items = self.stack[start + 1 :]
        del self.stack[start:]
        if self.live_guarded:
            self.live_guarded -= sum(type(item) in _GUARDED_TYPES for item in items)
        return items

    def pop_to_mark(self) -> list[object]:
        items = self.take_to_mark()
        self.escaped.extend(item for item in items if type(item) in _GUARDED_TYPES)
        return items

    def top(self) -> object:
        if not self.stack or self.stack[-1] is MARK:
            raise _underflow()
        return self.stack[-1]


def _int(arg: object) -> int:
    assert isinstance(arg, int)
    return arg


def apply_memo(name: str, arg: object, pos: int, frame: Frame) -> None:
    if name == "MEMOIZE":
        frame.memo[len(frame.memo)] = frame.top()
    elif name.endswith("PUT"):
        key = _int(arg)
        if key < 0:
            raise StreamError("negative memo key", pos)
        frame.memo[key] = frame.top()
    else:
        key = _int(arg)
        try:
            value = frame.memo[key]
        except KeyError:
            raise StreamError(
                f"memo key {key} read before it is written", pos, "unwritten-memo"
            ) from None
        frame.push(value)


def _unhashable(value: object, container: object) -> bool:
    return value is container or type(value) in (list, dict, _MutableSet)


def _impossible(what: str) -> StreamError:
    return StreamError(
        f"{what} that no loader can build (an unhashable or self-referencing key)", -1,
        "impossible-structure",
    )


def _pairs(items: list[object], container: object) -> list[tuple[object, object]]:
    if len(items) % 2:
        raise StreamError("an odd number of items for a dict", -1)
    pairs = list(zip(items[::2], items[1::2], strict=True))
    if any(_unhashable(key, container) for key, _ in pairs):
        raise _impossible("a dict key")
    return pairs


def apply_container_op(opcode: pickletools.OpcodeInfo, arg: object, frame: Frame) -> None:
    """Constants, tuples, lists and dicts are tracked by value; other opcodes by stack effect.

    A dict key that is not a literal is kept as the key UNKNOWN, so a dict read back later is
    known to be inexact.
    """
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
    elif name == "EMPTY_SET":
        stack.append(_MutableSet())
    elif name == "DICT":
        result: dict[object, object] = {}
        for key, value in _pairs(frame.pop_to_mark(), result):
            result[key if _hashable(key) else UNKNOWN] = value
        stack.append(result)
    elif name in ("SETITEM", "SETITEMS"):
        items = frame.pop_to_mark() if name == "SETITEMS" else [frame.pop(), frame.pop()][::-1]
        target = frame.top()
        for key, value in _pairs(items, target):
            if isinstance(target, dict):
                target[key if _hashable(key) else UNKNOWN] = value
    elif name in ("APPEND", "APPENDS", "ADDITEMS", "FROZENSET"):
        items = frame.pop_to_mark() if name != "APPEND" else [frame.pop()]
        target = frame.top() if name != "FROZENSET" else None
        if name in ("ADDITEMS", "FROZENSET") and any(_unhashable(i, target) for i in items):
            raise _impossible("a set member")
        if name == "FROZENSET":
            stack.append(object())
        elif type(target) is list and name != "ADDITEMS":
            # numpy fills object arrays from such lists: their length is checked against shape.
            target.extend(items)
    elif name == "POP":
        frame.discard()
    elif name == "POP_MARK":
        frame.take_to_mark()
    elif name == "DUP":
        frame.push(frame.top())
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


_IMPORT_OPS: Final = frozenset({"GLOBAL", "INST", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4"})
MEMO_OPS: Final = frozenset(
    {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET"}
)
_GET_OPS: Final = frozenset({"GET", "BINGET", "LONG_BINGET"})
_CALL_OPS: Final = frozenset({"REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"})
_ADD_OPS: Final = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"})


def _qualified(value: object) -> str | None:
    return value.qualified_name if isinstance(value, Global) else None


class _Unscannable(StreamError):
    """The joblib reading can no longer be followed: the walk stops trusting what comes next."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message, offset, "unscannable")


class _Walker:
    """Walks one file (or buffer) holding one or more consecutive pickles.

    ``joblib_framing``: BUILD of a NumpyArrayWrapper reads an array from the file (the top
    level of ``joblib.load``); off for ``pickle.load``'s reading and for the nested pickles
    joblib writes for object arrays, which a plain unpickler reads.
    """

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
        self.pickle_index = 0
        self.started = False
        self.stopped_inside_frame = False
        # pickle.load's reading of a joblib file: past the first array, names assembled from
        # memo reads may be junk (joblib's nested pickles meet the outer memo), see `unsure`.
        self.past_array = False
        self.unsure: set[int] = set()
        self._frame_end: int | None = None
        self._reported: set[str] = set()
        self._weights: dict[int, int] = {}
        self._memoized: set[int] = set()
        # dicts read back from the memo (shared), and dicts a numpy dtype holds as its fields
        self._shared_dicts: set[int] = set()
        self._dtype_fields: set[int] = set()
        self._handlers: dict[str, Callable[[str, object, int, Frame], None]] = {
            "PROTO": self._proto,
            "FRAME": self._frame,
            "BUILD": self._build,
            "DUP": self._dup,
            "TUPLE": self._tuple,
            **dict.fromkeys(_IMPORT_OPS, self._import),
            **dict.fromkeys(MEMO_OPS, self._memo),
            **dict.fromkeys(_CALL_OPS, self._call),
        }

    # ---------------------------------------------------------------------------------------
    # Pickles, opcodes, limits

    def run(self) -> int:
        """Walk every pickle in the stream; returns how many were found."""
        count = 0
        while True:
            start = self._stream.tell()
            self.pickle_index = count
            try:
                self._walk_one()
            except _Unscannable as error:
                self._problem(error.kind, error.offset, str(error))
                return count + 1
            except StreamError as error:
                if count == 0:
                    raise self._malformed(error) from None
                if self.started:
                    self._problem(error.kind, error.offset, f"the pickle breaks: {error}")
                self._problem(
                    "trailing-data", start,
                    f"{self._size - start} bytes after the last complete pickle do not parse "
                    f"as a pickle ({error}); a custom loader could still read them",
                )
                return count
            count += 1
            if self._stream.tell() >= self._size:
                return count

    def _malformed(self, error: StreamError) -> MalformedPickle:
        partial = None
        if self.started:
            self._problem(error.kind, error.offset, f"the pickle breaks: {error}")
            partial = PickleScan(
                tuple(self.imports), tuple(self.problems), 1, self.protocol,
                self.joblib_arrays, self._size,
            )
        return MalformedPickle(str(error), error.offset, tuple(self.imports), partial)

    def _walk_one(self) -> None:
        frame = Frame()
        self._frame_end = None
        self._weights.clear()
        self._memoized.clear()
        self._shared_dicts.clear()
        self._dtype_fields.clear()
        stream = self._stream
        handlers = self._handlers
        begin = stream.tell()
        self.started = stream.read(1) in _OPCODE_BYTES
        stream.seek(begin)
        for count, (opcode, arg, pos) in enumerate(iter_ops(stream, self._size)):
            offset = pos if pos is not None else -1
            if self._frame_end is not None:
                self._check_frame(offset, stream.tell())
            name = opcode.name
            try:
                if name in CONSTANT_OPS:
                    frame.stack.append(constant(name, arg))
                elif name == "STOP":
                    self._stop(frame, offset)
                    return
                elif (handler := handlers.get(name)) is not None:
                    if name == "PROTO" and count:
                        self._anomaly("late-proto", offset, "a PROTO opcode after the first")
                    handler(name, arg, offset, frame)
                else:
                    self._container(opcode, arg, offset, frame)
            except StreamError as error:
                if error.offset < 0:
                    error.offset = offset
                raise
            if frame.escaped:
                self._escape(frame, offset)
            if count % _CHECK_EVERY == 0:
                self._check_limits(frame, offset)

    def _check_limits(self, frame: Frame, pos: int) -> None:
        """Bound time and memory: a hostile stream must not hang or exhaust the scanner."""
        if len(frame.stack) > MAX_STACK or len(frame.memo) > MAX_MEMO:
            raise StreamError(
                "the stack or memo grows past the scanner's limits", pos, "scan-limits"
            )
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise StreamError("scanning ran past its time budget", pos, "scan-limits")

    def _problem(self, kind: str, offset: int, message: str) -> None:
        self.problems.append(ScanProblem(kind, offset, message))

    def _anomaly(self, kind: str, offset: int, message: str) -> None:
        """A structural anomaly the loaders survive: reported once per kind, walk goes on."""
        if kind not in self._reported:
            self._reported.add(kind)
            self._problem(kind, offset, message)

    # ---------------------------------------------------------------------------------------
    # Protocol, frames, STOP

    def _proto(self, name: str, arg: object, pos: int, frame: Frame) -> None:
        version = _int(arg)
        if version > _HIGHEST_PROTOCOL:
            raise StreamError(f"unsupported pickle protocol {version}", pos)
        self.protocol = max(self.protocol, version)

    def _check_frame(self, pos: int, end: int) -> None:
        """The pure-Python unpickler reads opcodes from the frame buffer until it is used up."""
        assert self._frame_end is not None
        if pos >= self._frame_end:
            self._frame_end = None
        elif end > self._frame_end:
            self._anomaly(
                "frame-straddle", pos,
                f"the opcode at {pos} runs past the end of its frame at {self._frame_end}",
            )
            self._frame_end = None

    def _frame(self, name: str, arg: object, pos: int, frame: Frame) -> None:
        end = self._stream.tell()
        if self._frame_end is not None:
            self._anomaly(
                "frame-reopened", pos, f"a FRAME begins before the frame ending at "
                f"{self._frame_end} is used up",
            )
        self._frame_end = end + _int(arg)
        if self._frame_end > self._size:
            self._anomaly(
                "frame-past-end", pos, f"a FRAME of {_int(arg)} bytes runs past the end of the data"
            )

    def _stop(self, frame: Frame, pos: int) -> None:
        frame.take()
        if frame.stack:
            self._anomaly(
                "stack-leftover", pos,
                f"{len(frame.stack)} values or marks are left on the stack at STOP",
            )
        if self._frame_end is not None and self._frame_end != self._stream.tell():
            # The pure-Python unpickler has read the whole frame: a second load (or joblib's
            # outer pickle) resumes after it, C's pickle.load right after STOP.
            self.stopped_inside_frame = True
            self._anomaly(
                "stop-inside-frame", pos, "STOP is followed by more bytes of its frame"
            )

    # ---------------------------------------------------------------------------------------
    # Imports and calls

    def _global(self, module: str, name: str) -> Global:
        qualified = f"{module}.{name}"
        if qualified in DTYPE_GLOBALS or (
            self._joblib_framing and qualified == JOBLIB_ARRAY_WRAPPER
        ):
            return _GuardedGlobal(module, name)
        return Global(module, name)

    def _import(self, name: str, arg: object, pos: int, frame: Frame) -> None:
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            self._record(module, attr, pos, name)
            target = self._global(module, attr)
            if name == "INST":
                frame.push(self._apply(name, target, tuple(frame.pop_to_mark()), pos))
            else:
                frame.push(target)
            return
        if name == "STACK_GLOBAL":
            attr_value = frame.pop()
            module_value = frame.pop()
            if isinstance(module_value, str) and isinstance(attr_value, str):
                if _Recalled in (type(module_value), type(attr_value)):
                    self.unsure.add(len(self.imports))
                self._record(str(module_value), str(attr_value), pos, name)
                frame.push(self._global(module_value, attr_value))
                return
            self._problem(
                "dynamic-import", pos,
                "STACK_GLOBAL imports a name that is computed at load time, "
                "so it cannot be checked without running the pickle",
            )
        else:
            self._problem(
                "extension-import", pos,
                f"{name} imports whatever the copyreg extension registry maps code {arg} "
                "to in the loading process",
            )
        frame.push(UNKNOWN)

    def _record(self, module: str, name: str, pos: int, opcode: str) -> None:
        self.imports.append(GlobalImport(module, name, pos, opcode, self.pickle_index))

    def _call(self, name: str, arg: object, pos: int, frame: Frame) -> None:
        if name == "OBJ":
            items = frame.take_to_mark()
            if not items:
                raise _underflow()
            func, arguments = items[0], tuple(items[1:])
            frame.escaped.extend(i for i in arguments if type(i) in _GUARDED_TYPES)
            args: object = arguments
        else:
            if name == "NEWOBJ_EX":
                frame.pop()  # keyword arguments
            args = frame.take()
            func = frame.take()
        frame.push(self._apply(name, func, args, pos))

    def _apply(self, name: str, func: object, args: object, pos: int) -> object:
        """The value of ``func(*args)``; canonical joblib wrapper constructions are recognised,
        every other use of a guarded class is unscannable."""
        wrapper = _canonical_wrapper(name, func, args)
        if wrapper and self._joblib_framing:
            return _WrapperInstance(func, args)
        if type(args) in _GUARDED_TYPES or (type(func) in _GUARDED_TYPES and wrapper is False):
            guarded = func if type(func) in _GUARDED_TYPES else args
            if _is_dtype_class(guarded):
                self._problem("unsafe-dtype", pos, "the numpy dtype class is passed around")
            else:
                raise _Unscannable(
                    f"a joblib array wrapper made by {name} in a way joblib's pickler never "
                    "writes: where joblib then reads the array bytes cannot be known", pos,
                )
        if _qualified(func) in _FROMBUFFER:
            dtype = args[1] if isinstance(args, tuple) and len(args) > 1 else None
            self._check_raw_array(dtype, pos, "numpy _frombuffer")
        return Call(func, args)

    def _tuple(self, name: str, arg: object, pos: int, frame: Frame) -> None:
        items = frame.take_to_mark()
        if _is_reconstructor_args(items):
            frame.push(_ReconstructorArgs(items))
            return
        frame.escaped.extend(i for i in items if type(i) in _GUARDED_TYPES)
        frame.stack.append(tuple(items))

    def _memo(self, name: str, arg: object, pos: int, frame: Frame) -> None:
        apply_memo(name, arg, pos, frame)
        value = frame.stack[-1]
        if name in _GET_OPS:
            if type(value) in (_WrapperInstance, _ReconstructorArgs):
                raise _Unscannable(
                    "a joblib array wrapper is read back from the memo, which joblib's pickler "
                    "never writes", pos,
                )
            if self.past_array and type(value) is str:
                frame.stack[-1] = _Recalled(value)
            if type(value) is dict:
                self._shared_dicts.add(id(value))
                if id(value) in self._dtype_fields:
                    self._problem(
                        "unsafe-dtype", pos, "the fields dict of a numpy dtype is read back "
                        "from the memo: changing it would change the dtype after its check",
                    )
        elif isinstance(value, (list, tuple, dict)):
            self._memoize(value, pos)

    def _dup(self, name: str, arg: object, pos: int, frame: Frame) -> None:
        self._anomaly("expansion", pos, "DUP, which no pickler writes, duplicates a reference")
        if type(frame.top()) in (_WrapperInstance, _ReconstructorArgs):
            raise _Unscannable("a joblib array wrapper is duplicated", pos)
        frame.push(frame.top())

    def _escape(self, frame: Frame, pos: int) -> None:
        escaped = frame.escaped[:]
        frame.escaped.clear()
        if not all(_is_dtype_class(value) for value in escaped):
            raise _Unscannable(
                "the joblib array wrapper class is used in a way joblib's pickler never writes "
                "(passed to a function, stored in a container): joblib may build a wrapper the "
                "scanner cannot follow", pos,
            )
        self._problem(
            "unsafe-dtype", pos,
            "the numpy dtype class is passed to a function or stored in a container: a dtype "
            "built from it can be given any state",
        )

    # ---------------------------------------------------------------------------------------
    # BUILD: joblib arrays, numpy dtypes and arrays

    def _build(self, name: str, arg: object, pos: int, frame: Frame) -> None:
        state = frame.pop()
        target = frame.top()
        if type(target) is _WrapperInstance:
            self._build_wrapper(target, state, pos, frame)
            return
        if not isinstance(target, Call):
            return
        if builds_joblib_wrapper(target):
            self.past_array = True  # joblib would read an array here; this reading goes on
        func = _qualified(target.func)
        if func in DTYPE_GLOBALS:
            if target.state is not UNKNOWN:
                self._problem("unsafe-dtype", pos, "a numpy dtype whose state is set twice")
            target.state = state
            self._check_dtype(target, pos)
            self._hold_fields(state, pos)
            return
        target.state = state
        array_state = state if isinstance(state, tuple) and len(state) >= 5 else None
        if func not in _ARRAY_STATES or not array_state:
            return
        if isinstance(array_state[4], list):
            self._check_object_list(array_state[1], array_state[4], pos)
        else:
            self._check_raw_array(array_state[2], pos, "an ndarray state of raw bytes")

    def _check_object_list(self, shape: object, items: list[object], pos: int) -> None:
        """numpy fills an object array from the list without checking its length against the
        shape, so a shorter list makes it read past the list's end."""
        if not isinstance(shape, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            self._problem("unsafe-dtype", pos, "an object array state whose shape is not literal")
        elif math.prod(shape) != len(items):
            self._problem(
                "unsafe-dtype", pos,
                f"an object array state that declares {math.prod(shape)} elements and holds "
                f"{len(items)}",
            )

    def _hold_fields(self, state: object, pos: int) -> None:
        """numpy keeps the fields dict itself: it must not be reachable to change later."""
        fields = state[4] if isinstance(state, tuple) and len(state) >= 5 else None
        if type(fields) is not dict:
            return
        if id(fields) in self._shared_dicts:
            self._problem(
                "unsafe-dtype", pos, "a numpy dtype whose fields dict is shared through the memo"
            )
        self._dtype_fields.add(id(fields))

    def _check_dtype(self, dtype: Call, pos: int) -> None:
        try:
            dtype_layout(dtype)
        except UnsafeDtype as error:
            self._problem("unsafe-dtype", pos, str(error))

    def _check_raw_array(self, dtype: object, pos: int, where: str) -> None:
        """Raw bytes become an array of ``dtype``: they must not become object pointers."""
        try:
            layout = dtype_layout(dtype)
        except UnsafeDtype as error:
            self._problem(
                "unsafe-dtype", pos, f"{where} with a dtype that cannot be verified: {error}"
            )
            return
        if layout.has_objects:
            self._problem(
                "unsafe-dtype", pos, f"{where} fills an object-holding dtype from raw bytes"
            )

    def _build_wrapper(
        self, wrapper: _WrapperInstance, state: object, pos: int, frame: Frame
    ) -> None:
        """joblib replaces the wrapper by the array it reads straight from the file."""
        if wrapper.built:
            raise _Unscannable("a joblib array wrapper built twice", pos)
        end = self._stream.tell()
        if self._frame_end is not None and self._frame_end != end:
            raise _Unscannable(
                "a joblib array wrapper is built inside a protocol 4 frame that goes on after "
                "it: joblib reads the array from after the frame, not from after the wrapper",
                pos,
            )
        self._frame_end = None
        if id(state) in self._shared_dicts:
            raise _Unscannable(
                "a joblib array wrapper state read back from the memo: it may have been changed "
                "by whatever else received it", pos,
            )
        try:
            nbytes, has_objects, aligned = wrapper_layout(state)
        except UnsafeDtype as error:
            raise _Unscannable(
                f"a joblib array wrapper the scanner cannot follow: {error}", pos
            ) from None
        wrapper.state = state
        wrapper.built = True
        frame.take()
        frame.stack.append(UNKNOWN)
        self.joblib_arrays += 1
        if has_objects:
            self._nested_pickle(pos)
        else:
            self._skip_array(nbytes, aligned)

    def _nested_pickle(self, pos: int) -> None:
        """joblib writes object arrays as a nested pickle, read by a plain unpickler."""
        if self._depth >= _MAX_NESTED_ARRAYS:
            raise StreamError("joblib object arrays nested too deeply", pos, "scan-limits")
        nested = _Walker(
            self._stream, self._size, joblib_framing=False, depth=self._depth + 1,
            deadline=self._deadline,
        )
        nested.pickle_index = self.pickle_index
        try:
            nested._walk_one()
        finally:
            self.imports.extend(nested.imports)
            self.problems.extend(nested.problems)
        if nested.stopped_inside_frame:
            raise _Unscannable(
                "a joblib object array's nested pickle stops inside its frame: joblib resumes "
                "after the frame", pos,
            )

    def _skip_array(self, nbytes: int, aligned: bool) -> None:
        start = self._stream.tell()
        if aligned:
            padding = self._stream.read(1)
            if not padding:
                raise StreamError("joblib array padding byte missing", start)
            # Checked before seeking: a memory map refuses a seek past its end with a
            # ValueError, where a file would silently go there.
            if self._stream.tell() + padding[0] > self._size:
                raise StreamError("joblib array padding runs past the end of the file", start)
            self._stream.seek(padding[0], io.SEEK_CUR)
        end = self._stream.tell() + nbytes
        if end > self._size:
            raise StreamError(
                f"joblib array of {nbytes} bytes runs past the end of the file", start
            )
        self._stream.seek(end)

    # ---------------------------------------------------------------------------------------
    # Containers and memo fan-out

    def _container(
        self, opcode: pickletools.OpcodeInfo, arg: object, pos: int, frame: Frame
    ) -> None:
        name = opcode.name
        if name in _ADD_OPS and self._memoized:
            target, items = _add_target(name, frame)
            apply_container_op(opcode, arg, frame)
            if id(target) in self._memoized:
                self._grow(target, items, pos)
            return
        apply_container_op(opcode, arg, frame)

    def _memoize(
        self, value: list[object] | tuple[object, ...] | dict[object, object], pos: int
    ) -> None:
        """A memoised container can be referenced many times: track its expanded size."""
        self._memoized.add(id(value))
        if id(value) not in self._weights:
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            self._weights[id(value)] = 1
            self._grow(value, items, pos)

    def _grow(self, target: object, items: object, pos: int) -> None:
        weights = self._weights
        assert isinstance(items, (list, tuple))
        total = weights.get(id(target), 1) + sum(weights.get(id(i), 1) for i in items)
        weights[id(target)] = min(total, MAX_EXPANDED + 1)
        if total > MAX_EXPANDED:
            self._anomaly(
                "expansion", pos, f"a structure whose shared references expand to more than "
                f"{MAX_EXPANDED} values: a memo expansion bomb, not data",
            )


def _add_target(name: str, frame: Frame) -> tuple[object, list[object]]:
    """The container an APPEND/SETITEM-like opcode adds to, and what it adds (peeked)."""
    stack = frame.stack
    if name in ("APPEND", "SETITEM"):
        count = 1 if name == "APPEND" else 2
        return (stack[-count - 1] if len(stack) > count else None), stack[-count:]
    if not frame.marks:
        return None, []
    start = frame.marks[-1]
    return (stack[start - 1] if start > 0 else None), stack[start + 1 :]


def _is_dtype_class(value: object) -> bool:
    return type(value) is _GuardedGlobal and not value.is_wrapper


def _is_wrapper_class(value: object) -> bool:
    return isinstance(value, Global) and value.qualified_name == JOBLIB_ARRAY_WRAPPER


def _is_reconstructor_args(items: list[object] | tuple[object, ...]) -> bool:
    return (
        len(items) == 3
        and _is_wrapper_class(items[0])
        and _qualified(items[1]) in _OBJECT_CLASSES
        and items[2] is None
    )


def _canonical_wrapper(name: str, func: object, args: object) -> bool | None:
    """Whether this call is joblib's own construction of a NumpyArrayWrapper.

    True: ``NEWOBJ`` of the class with no arguments (protocols 2-5), or ``REDUCE`` of
    ``copyreg._reconstructor`` with (class, object, None) (protocols 0-1). False: the class is
    used some other way. None: the call does not involve the class.
    """
    if _is_wrapper_class(func):
        return name == "NEWOBJ" and args == ()
    if isinstance(args, tuple) and _is_reconstructor_args(args):
        return name == "REDUCE" and _qualified(func) in _RECONSTRUCTORS
    return None


def builds_joblib_wrapper(call: Call) -> bool | None:
    """Whether BUILD is about to complete a NumpyArrayWrapper, after which joblib reads raw bytes.

    True only for joblib's own construction (see :func:`_canonical_wrapper`); None when the
    class is passed anywhere else, a construction a static reader cannot follow; False when
    the class is not involved.
    """
    func, args = call.func, call.args
    for name in ("NEWOBJ", "REDUCE"):
        if _canonical_wrapper(name, func, args):
            return True
    arguments = args if isinstance(args, tuple) else ()
    if _is_wrapper_class(func) or any(_is_wrapper_class(a) for a in arguments):
        return None
    return False


def dtype_layout(value: object, depth: int = 0) -> DtypeLayout:
    """Item size and object-ness of a pickled ``numpy.dtype(code, align, copy)`` + BUILD.

    Raises :class:`UnsafeDtype` for anything that is not such a construction, or whose state
    numpy would accept inconsistently (see :mod:`mlaudit.scanners.dtype_safety`).
    """
    if depth > _MAX_DTYPE_DEPTH:
        raise UnsafeDtype("numpy dtypes nested too deeply")
    if not isinstance(value, Call) or _qualified(value.func) not in DTYPE_GLOBALS:
        raise UnsafeDtype("a value that is not a numpy.dtype construction is used as a dtype")
    args = value.args
    code = args[0] if isinstance(args, tuple) and args else None
    if not isinstance(code, str) or not _DTYPE_CODE.match(code):
        raise UnsafeDtype(f"numpy.dtype of {code!r}, which is not a plain type code")
    return layout_of(
        code, value.state, lambda inner: dtype_layout(inner, depth + 1),
        has_state=value.state is not UNKNOWN,
    )


def wrapper_layout(state: object) -> tuple[int, bool, bool]:
    """(payload bytes, holds Python objects, has an alignment padding byte) of a wrapper state.

    The state must be what joblib writes: a literal dict whose keys are the wrapper's own
    attribute names (an extra key could shadow a method joblib calls) and whose values are
    literals the walker resolved. Raises :class:`UnsafeDtype` otherwise.
    """
    if type(state) is not dict:
        raise UnsafeDtype("the wrapper state is not a literal dict")
    keys = set(state)
    if not keys <= _WRAPPER_KEYS or not keys >= _WRAPPER_REQUIRED:
        raise UnsafeDtype("the wrapper state has computed, unknown or missing keys")
    shape, order = state["shape"], state["order"]
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise UnsafeDtype("the wrapper shape is not a tuple of sizes")
    if order not in ("C", "F") or not isinstance(state["subclass"], Global):
        raise UnsafeDtype("the wrapper order or subclass is not a literal")
    if not isinstance(state.get("allow_mmap", False), bool):
        raise UnsafeDtype("the wrapper allow_mmap is not a literal bool")
    alignment = state.get("numpy_array_alignment_bytes")
    if alignment is not None and (not isinstance(alignment, int) or isinstance(alignment, bool)):
        raise UnsafeDtype("the wrapper alignment is not a literal int or None")
    layout = dtype_layout(state["dtype"])
    count = math.prod(shape)
    if count >= 1 << 63:
        raise UnsafeDtype("the wrapper shape overflows joblib's int64 element count")
    return count * layout.itemsize, layout.has_objects, alignment is not None


def joblib_array_layout(state: object) -> tuple[int, bool, bool] | None:
    """(payload bytes, holds Python objects, has an alignment padding byte), or None."""
    try:
        return wrapper_layout(state)
    except UnsafeDtype:
        return None


_LENGTH_PREFIXED: Final = {
    # opcode byte -> (name, width of its little-endian length field)
    b"B": ("BINBYTES", 4), b"\x8e": ("BINBYTES8", 8), b"\x96": ("BYTEARRAY8", 8),
    b"X": ("BINUNICODE", 4), b"\x8d": ("BINUNICODE8", 8), b"T": ("BINSTRING", 4),
}
_OPCODES_BY_NAME: Final = {op.name: op for op in pickletools.opcodes}
_OPCODE_BYTES: Final = frozenset(op.code.encode("latin-1") for op in pickletools.opcodes)
LARGE_ARGUMENT_BYTES: Final = 1 << 20


class _Large:
    """A bytes or text argument too long to be a name: skipped, never read into memory."""


_LARGE_VALUE: Final = _Large()


_TEXT_GLOBALS: Final = {b"c": "GLOBAL", b"i": "INST"}


def _decode_here(
    stream: IO[bytes], size: int
) -> tuple[pickletools.OpcodeInfo, object, int] | None:
    """Decode the next opcode where ``genops`` would differ from the real unpicklers.

    * A length-prefixed argument of LARGE_ARGUMENT_BYTES or more is stepped over without
      being read: ``genops`` reads every argument into memory, and a declared length of
      gigabytes (real, in a big array, or a lie) would cost that much memory.
    * GLOBAL and INST names are decoded as the unpicklers decode them (UTF-8, no escapes);
      ``genops`` applies string escapes and accepts only ASCII, so it would name a different
      global, or stop where the loader goes on.

    Returns None to let ``genops`` decode the next opcode.
    """
    position = stream.tell()
    code = stream.read(1)
    if code in _TEXT_GLOBALS:
        lines = (stream.readline(), stream.readline())
        if not all(line.endswith(b"\n") for line in lines):
            raise StreamError("no newline found when trying to read a global name", position)
        try:
            module, name = (line[:-1].decode("utf-8") for line in lines)
        except UnicodeDecodeError:
            raise StreamError("a global name that is not UTF-8", position) from None
        return _OPCODES_BY_NAME[_TEXT_GLOBALS[code]], f"{module} {name}", position
    spec = _LENGTH_PREFIXED.get(code)
    if spec is None:
        stream.seek(position)
        return None
    opcode, width = spec
    field = stream.read(width)
    length = int.from_bytes(field, "little", signed=False) if len(field) == width else 0
    if length < LARGE_ARGUMENT_BYTES:
        stream.seek(position)
        return None
    end = position + 1 + width + length
    if end > size:
        raise StreamError(f"{opcode} declares {length} bytes, past the end of the data", position)
    stream.seek(end)
    return _OPCODES_BY_NAME[opcode], _LARGE_VALUE, position


def iter_ops(
    stream: IO[bytes], size: int
) -> Iterator[tuple[pickletools.OpcodeInfo, object, int | None]]:
    """``pickletools.genops`` with large arguments skipped, global names decoded as the
    unpicklers decode them, and errors given offsets."""
    operations = pickletools.genops(stream)
    while True:
        position = stream.tell()
        decoded = _decode_here(stream, size)
        if decoded is not None:
            yield decoded
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


def _hashable(value: object) -> bool:
    return isinstance(value, (str, bytes, int, float, bool, type(None)))


def _plain_pickle_view(
    stream: IO[bytes], start: int, size: int, deadline: float
) -> list[GlobalImport]:
    """Imports that ``pickle.load`` (or torch's reader) would meet ignoring joblib's framing.

    joblib reads array bytes raw, but ``pickle.load`` on the same file runs them as opcodes,
    so a file is only as safe as the worse of the two readings. Every name this reading
    imports that is not allowlisted counts, except names assembled from memo reads past the
    first array: joblib's nested object-array pickles meet the outer memo there and assemble
    junk that fails to import, so of those only the dangerous ones count.
    """
    stream.seek(start)
    walker = _Walker(stream, size, joblib_framing=False, deadline=deadline)
    # One pickle.load call: it returns at the first STOP it meets, or raises where the bytes
    # stop decoding, having run only what was recorded up to there.
    with contextlib.suppress(StreamError):
        walker._walk_one()
    counted = []
    for index, found in enumerate(walker.imports):
        verdict = classify(found.module, found.name).verdict
        if verdict is Verdict.DANGEROUS or (
            verdict is not Verdict.ALLOWED and index not in walker.unsure
        ):
            counted.append(found)
    return counted


def scan_stream(
    stream: IO[bytes], size: int, *, time_budget_s: float = DEFAULT_SCAN_SECONDS
) -> PickleScan:
    """Scan the pickles from the stream's position to ``size`` (an absolute end offset).

    Raises :class:`MalformedPickle` when the first pickle cannot be walked to its end:
    truncated, corrupt, or past the time and memory limits that keep a hostile file from
    exhausting the scanner. Its ``partial`` is the scan up to the break (None when the data
    is not a pickle at all).
    """
    start = stream.tell()
    deadline = time.monotonic() + time_budget_s
    walker = _Walker(stream, size, deadline=deadline)
    try:
        count = walker.run()
    except RecursionError:
        raise MalformedPickle("structure nested too deeply to analyse", 0, ()) from None
    imports = list(walker.imports)
    if walker.joblib_arrays or any(p.kind == "unscannable" for p in walker.problems):
        seen = {(i.module, i.name, i.offset) for i in imports}
        imports += [
            i
            for i in _plain_pickle_view(stream, start, size, deadline)
            if (i.module, i.name, i.offset) not in seen
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
