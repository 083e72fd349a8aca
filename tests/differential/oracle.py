"""The real loaders, run in a long-lived child process that records every global they resolve.

The child never imports what a file names. Plain pickles go through a subclass of the C
``pickle.Unpickler`` whose ``find_class`` records ``(module, name)`` and returns an inert
:class:`Stub`, so the walk goes on and later globals are recorded too. joblib streams go
through joblib's own ``NumpyUnpickler`` with the same recording ``find_class``. Only the few
globals joblib's array reading needs and a handful of pure constructors
(:data:`REAL_GLOBALS`) are the real objects, so raw array bytes are consumed exactly as joblib
consumes them. torch zip checkpoints go through
``torch.load(weights_only=False, pickle_module=...)`` with the recording unpickler, so torch's
own zip reader decides which member is the pickle.

The parent talks to the child over pipes with plain bytes and JSON: it never unpickles
anything the child sends. A child that dies (segfault) or stops answering (hang) is restarted
and the case is recorded as a crash or a hang.
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
KINDS: Final = ("pickle", "joblib", "torch")
_STOP_KIND: Final = 255
_HEADER: Final = struct.Struct("<BI")
_COUNT: Final = struct.Struct("<I")
_ERROR_CHARS: Final = 200
_MEMORY_LIMIT: Final = 8 * 1024**3
_READY: Final = b"ready\n"
_STARTUP_TIMEOUT_S: Final = 600.0

# The only globals ever resolved to the real object; everything else is a Stub. First what
# joblib's array reading needs (the wrapper class its load_build recognises, the dtype it
# reads, numpy's reconstruction of array subclasses), so raw array bytes are consumed as joblib
# consumes them. Then pure constructors and combinators that run no code of their own: with
# them real, a computed dict key or a computed STACK_GLOBAL name, a wrapper made through
# functools.partial or copyreg._reconstructor, are what the real loader makes of them, not a
# Stub that would end the walk early. None of these can reach a callable that is not either
# one of them or a Stub, so no real side effect is possible.
REAL_GLOBALS: Final = frozenset(
    {
        "joblib.numpy_pickle.NumpyArrayWrapper", "numpy.dtype", "numpy.ndarray",
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "builtins.str", "builtins.bytes", "builtins.int", "builtins.float", "builtins.bool",
        "builtins.tuple", "builtins.list", "builtins.dict", "builtins.set",
        "builtins.frozenset", "builtins.object", "functools.partial", "copyreg._reconstructor",
        "_codecs.encode",
    }
)


# ------------------------------------------------------------------------- child side


class _StubType(type):
    """Metaclass of :class:`Stub`: the class object itself also absorbs attribute and item use."""

    def __getattr__(cls, name: str) -> Stub:
        return Stub()

    def __setitem__(cls, key: object, value: object) -> None:
        return None


class Stub(metaclass=_StubType):
    """An inert stand-in for any global: every call, attribute, item set and state is absorbed.

    It is returned by the recording ``find_class`` instead of the real object, so no real
    callable ever runs, and the unpickler walks on (REDUCE, NEWOBJ, BUILD, APPENDS, SETITEMS)
    to the globals that come later in the stream.
    """

    def __new__(cls, *args: object, **kwargs: object) -> Stub:
        return super().__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        return None

    def __call__(self, *args: object, **kwargs: object) -> Stub:
        return Stub()

    def __getattr__(self, name: str) -> Stub:
        return Stub()

    def __setitem__(self, key: object, value: object) -> None:
        return None


def _is_real(module: str, name: str) -> bool:
    """Whether the unpickler resolves this name to a real object: compared as one dotted name
    after the Python 2 renames, as the unpickler walks ``module`` + dotted ``name`` to the
    same object whichever way the dots are split."""
    import _compat_pickle

    key = _compat_pickle.NAME_MAPPING.get((module, name))
    if key is None:
        key = (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
    return ".".join(key) in REAL_GLOBALS


def _recording_find_class(
    record: list[tuple[str, str]], real: Callable[[str, str], Any]
) -> Callable[[str, str], Any]:
    """A ``find_class`` that records every resolution and returns a Stub for all but the few
    :data:`REAL_GLOBALS`, which ``real`` (the unpickler's own ``find_class``) resolves."""

    def find_class(module: str, name: str) -> Any:
        record.append((str(module), str(name)))
        if isinstance(module, str) and isinstance(name, str) and _is_real(module, name):
            return real(module, name)
        return Stub

    return find_class


def recording_pickle_module(record: list[tuple[str, str]]) -> types.ModuleType:
    """A module like ``pickle`` whose ``Unpickler`` and ``load`` record and stub every global."""
    import pickle

    class RecordingUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return _recording_find_class(record, super().find_class)(module, name)

    def load(file: BinaryIO, **kwargs: Any) -> Any:
        return RecordingUnpickler(file, **kwargs).load()

    module = types.ModuleType("mlaudit_recording_pickle")
    module.Unpickler = RecordingUnpickler  # type: ignore[attr-defined]
    module.load = load  # type: ignore[attr-defined]
    module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return module


class TorchScriptArchive(Exception):
    """The torch case is a TorchScript archive, which the oracle refuses to run."""


def _load_plain(data: bytes, record: list[tuple[str, str]]) -> None:
    """Every pickle in the stream, one after the other, as a reader looping on ``load`` would."""
    module = recording_pickle_module(record)
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        module.load(stream)


def _load_joblib(data: bytes, record: list[tuple[str, str]]) -> None:
    """joblib.load's path for an uncompressed stream: its NumpyUnpickler, recording globals."""
    from joblib import numpy_pickle

    class RecordingNumpyUnpickler(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            return _recording_find_class(record, super().find_class)(module, name)

    stream = io.BytesIO(data)
    RecordingNumpyUnpickler("", stream, ensure_native_byte_order=True).load()


def _load_torch(data: bytes, record: list[tuple[str, str]]) -> None:
    """torch.load with the recording unpickler: torch's own zip reader picks the member.

    A TorchScript archive is not loaded: torch.load hands it to torch.jit.load, which runs
    its TorchScript code (no Python unpickler, so no global to record) and would run the
    payload. Asked with torch's own test, so the oracle and torch.load agree on what it is.
    """
    import torch
    from torch import serialization

    if zipfile.is_zipfile(io.BytesIO(data)):
        with serialization._open_zipfile_reader(io.BytesIO(data)) as reader:
            if serialization._is_torchscript_zip(reader):  # type: ignore[no-untyped-call]
                raise TorchScriptArchive
    torch.load(
        io.BytesIO(data), map_location="cpu", weights_only=False,
        pickle_module=recording_pickle_module(record),
    )


_LOADERS: Final[dict[int, Callable[[bytes, list[tuple[str, str]]], None]]] = {
    0: _load_plain, 1: _load_joblib, 2: _load_torch,
}


def _evaluate(kind: int, data: bytes) -> dict[str, Any]:
    record: list[tuple[str, str]] = []
    error = None
    try:
        _LOADERS[kind](data, record)
    except BaseException as exc:  # any loader failure, even SystemExit, is an outcome
        error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
    return {"g": record, "e": error}


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def _import_loaders() -> None:
    """Import the real loaders before the first case, so their start-up (tens of seconds for
    torch on a busy machine) is never taken for a hang."""
    import joblib.numpy_pickle  # noqa: F401

    try:
        import torch  # noqa: F401
    except ImportError:
        return


def serve() -> None:
    """The child's loop: read a batch of cases, answer one JSON line per case as it finishes."""
    import resource
    import warnings

    # A case that asks a real constructor for a huge object fails with MemoryError here
    # instead of taking the shared machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))
    warnings.simplefilter("ignore")
    results = os.dup(1)
    os.dup2(2, 1)  # anything a loader prints goes to stderr, never into the answers
    _import_loaders()
    os.write(results, _READY)
    stdin = sys.stdin.buffer
    while True:
        try:
            (count,) = _COUNT.unpack(_read_exact(stdin, _COUNT.size))
        except EOFError:
            return
        cases = []
        for _ in range(count):
            kind, size = _HEADER.unpack(_read_exact(stdin, _HEADER.size))
            cases.append((kind, _read_exact(stdin, size)))
        for kind, data in cases:
            if kind == _STOP_KIND:
                return
            line = json.dumps(_evaluate(kind, data)) + "\n"
            os.write(results, line.encode())


# ------------------------------------------------------------------------ parent side


@dataclass(frozen=True)
class Resolution:
    """What the real loader did with one case: the globals it resolved, in order, and how it
    ended (an exception message, a crash of the child process, or a hang)."""

    globals: tuple[tuple[str, str], ...]
    error: str | None = None
    crashed: bool = False
    hung: bool = False


class Oracle:
    """One long-lived child running the real loaders; :meth:`resolve` evaluates a batch."""

    def __init__(self, case_timeout_s: float = 20.0) -> None:
        self.case_timeout_s = case_timeout_s
        self.restarts = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._pending = b""

    def __enter__(self) -> Oracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._child is None:
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
            self._child = subprocess.Popen(
                [sys.executable, "-c", "from tests.differential.oracle import serve; serve()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                cwd=REPO_ROOT, env=env,
            )
            self._pending = b""
            assert self._child.stdout is not None
            ready = self._line(self._child.stdout.fileno(), _STARTUP_TIMEOUT_S)
            if ready != _READY.strip():
                raise RuntimeError(f"the oracle's child did not start: {ready!r}")
        return self._child

    def close(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _kill(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            child.wait()
        self.restarts += 1

    def resolve(self, cases: Sequence[tuple[str, bytes]]) -> list[Resolution]:
        """Run every ``(kind, data)`` case; a crash or hang restarts the child for the rest."""
        results: list[Resolution] = []
        while len(results) < len(cases):
            results.extend(self._run(cases[len(results):]))
        return results

    def _run(self, cases: Sequence[tuple[str, bytes]]) -> Iterator[Resolution]:
        child = self._start()
        assert child.stdin is not None
        assert child.stdout is not None
        batch = [_COUNT.pack(len(cases))]
        for kind, data in cases:
            batch.append(_HEADER.pack(KINDS.index(kind), len(data)))
            batch.append(data)
        try:
            child.stdin.write(b"".join(batch))
            child.stdin.flush()
        except BrokenPipeError:
            self._kill()
            yield Resolution((), "child died", crashed=True)
            return
        for _ in cases:
            line = self._line(child.stdout.fileno(), self.case_timeout_s)
            if line is None or isinstance(line, bool):
                hung = line is False
                self._kill()
                yield Resolution((), "timeout" if hung else "child died", not hung, hung)
                return
            answer = json.loads(line)
            yield Resolution(tuple((m, n) for m, n in answer["g"]), answer["e"])

    def _line(self, fd: int, timeout_s: float) -> bytes | bool | None:
        """The next line; False on a hang, None when the child died."""
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], timeout_s)
            if not ready:
                return False
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line
