"""After a model is loaded and before anything reads it: every NumPy array tells the truth about
the object pointers it holds.

numpy decides from a dtype's flags (``dtype.hasobject``) whether an item holds Python object
pointers. A pickled dtype state carries those flags verbatim, so allowlisted constructors
(``numpy.dtype`` with a state, ``_frombuffer``, ``ndarray.__setstate__``, ``scalar``) can build
an array whose fields hold objects while its flags say they do not: numpy then fills the
pointer slots with raw bytes from the file, and the first read of the array dereferences a
forged pointer. The static scan refuses such states (:mod:`mlaudit.scanners.dtype_safety`);
this is the second line, on the loaded object itself, for whatever the scan did not foresee.

The walk reads only dtype metadata, ``__dict__`` and ``__slots__`` (through their descriptors,
never ``__getattr__``), and the items of plain containers and of object arrays whose flags are
consistent. It never reads an array's data otherwise and never calls a method of the model.
It is bounded in depth and in objects visited; past either bound the model is refused, since
what was not visited was not checked.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any, Final

import numpy as np

from mlaudit.core.errors import InputError

MAX_DEPTH: Final = 128
MAX_OBJECTS: Final = 2_000_000
# Values with nothing to check behind them; classes and modules are code, not the model's data.
_ATOMS: Final = (
    str, bytes, bytearray, int, float, complex, bool, type(None), range, type, types.ModuleType,
)


class UnsafeArray(ValueError):
    """An array, scalar or dtype reachable from the model describes its memory inconsistently,
    or the model is too large or too deep to check."""


def object_fields_consistent(dtype: np.dtype[np.generic]) -> str | None:
    """None when ``dtype``'s object flag matches its structure at every level, else why not.

    Reads metadata only (kind, fields, subarray, flags): never data.
    """
    holds = _holds_objects(dtype)
    if holds and not dtype.hasobject:
        return (
            f"dtype {dtype!r} has object fields but does not carry numpy's object flag: "
            "its object slots would be read as pointers forged from the file's bytes"
        )
    if dtype.hasobject and not holds:
        return (
            f"dtype {dtype!r} carries numpy's object flag but holds no objects: numpy would "
            "treat plain bytes as object pointers"
        )
    for inner in _inner_dtypes(dtype):
        reason = object_fields_consistent(inner)
        if reason is not None:
            return reason
    return None


def _inner_dtypes(dtype: np.dtype[np.generic]) -> Iterator[np.dtype[np.generic]]:
    if dtype.subdtype is not None:
        yield dtype.subdtype[0]
    for field in (dtype.fields or {}).values():
        yield field[0]


def _holds_objects(dtype: np.dtype[np.generic]) -> bool:
    """Whether the structure of ``dtype`` holds objects, judged without its flags."""
    if dtype.kind == "O":
        return True
    return any(_holds_objects(inner) for inner in _inner_dtypes(dtype))


def check_loaded(root: object, origin: str) -> int:
    """Walk everything reachable from ``root``; raise :class:`UnsafeArray` on the first array,
    scalar or dtype whose object flag does not match its structure. Returns the number of
    objects visited."""
    seen: set[int] = set()
    pending: list[tuple[object, str, int]] = [(root, "model", 0)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, _ATOMS) or id(value) in seen:
            continue
        seen.add(id(value))
        if len(seen) > MAX_OBJECTS or depth > MAX_DEPTH:
            raise UnsafeArray(
                f"{origin}: the loaded model is too large or nested too deeply to check its "
                f"arrays ({MAX_OBJECTS} objects, depth {MAX_DEPTH}); refusing to read it"
            )
        dtype = _dtype_of(value)
        if dtype is not None:
            reason = object_fields_consistent(dtype)
            if reason is None and isinstance(value, np.ndarray) and dtype.subdtype is not None \
                    and dtype.hasobject:
                # numpy expands a subarray dtype into the array's shape; only a pickled state
                # leaves one on an array, and its objects could not be reached to check them.
                reason = f"an array of the object subarray dtype {dtype!r}"
            if reason is not None:
                raise UnsafeArray(f"{origin}: {path}: {reason}; refusing to read the model")
        pending.extend((child, child_path, depth + 1) for child_path, child in _children(
            value, path, dtype
        ))
    return len(seen)


def _dtype_of(value: object) -> np.dtype[np.generic] | None:
    if isinstance(value, np.dtype):
        return value
    if isinstance(value, np.ndarray | np.generic):
        return value.dtype
    return None


def _children(
    value: object, path: str, dtype: np.dtype[np.generic] | None
) -> Iterator[tuple[str, object]]:
    if isinstance(value, np.ndarray):
        yield from _array_items(value, path)
        return
    if dtype is not None:  # a scalar or a dtype: nothing further to reach
        return
    # The base type's own iteration, so a subclass's overrides are never called.
    if isinstance(value, dict):
        for index, (key, item) in enumerate(dict.items(value)):
            yield f"{path}[#{index}]", key
            yield (f"{path}[{key!r:.60}]" if isinstance(key, str) else f"{path}[#{index}]"), item
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            iterate: Any = base.__iter__
            for index, item in enumerate(iterate(value)):
                yield f"{path}[{index}]", item
    yield from _attributes(value, path)


def _array_items(array: np.ndarray, path: str) -> Iterator[tuple[str, object]]:
    """Objects held by an array whose flags were found consistent (the only ones read)."""
    dtype = array.dtype
    if not dtype.hasobject:
        return
    if dtype.kind == "O":
        for index, item in enumerate(array.flat):
            yield f"{path}.flat[{index}]", item
        return
    for name, field in (dtype.fields or {}).items():
        if field[0].hasobject:
            yield f"{path}[{name!r}]", array[name]


def _attributes(value: object, path: str) -> Iterator[tuple[str, object]]:
    """``__dict__`` and ``__slots__`` values, read through the type's own descriptors."""
    try:
        attributes = object.__getattribute__(value, "__dict__")
    except AttributeError:
        attributes = None
    if type(attributes) is dict:
        for key, item in attributes.items():
            yield f"{path}.{key}", item
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            descriptor = cls.__dict__.get(slot)
            if type(descriptor) is types.MemberDescriptorType:
                try:
                    yield f"{path}.{slot}", descriptor.__get__(value, cls)
                except AttributeError:  # an empty slot
                    continue


def refuse_unsafe_arrays(model: object, origin: str) -> None:
    """The loaders' refusal: an unsafe array makes the model unloadable (an input error)."""
    try:
        check_loaded(model, origin)
    except UnsafeArray as error:
        raise InputError(str(error)) from None
