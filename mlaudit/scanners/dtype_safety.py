"""Which pickled numpy dtype states numpy would accept while they describe memory inconsistently.

``numpy.dtype.__setstate__`` (``arraydescr_setstate``) trusts the pickled state: it installs the
pickled ``fields``, ``names`` and ``subarray`` as given, takes ``elsize`` and ``alignment``
for flexible kinds (void, bytes, str), and copies the pickled ``flags`` integer verbatim for
state versions 3 and 4. numpy decides from those flags (``NPY_ITEM_REFCOUNT``, alias
``NPY_ITEM_HASOBJECT``, and ``NPY_LIST_PICKLE``) whether an item holds Python object
pointers. A dtype whose fields hold objects while its flags say they do not lets
``numpy.frombuffer`` / ``_frombuffer`` or ``ndarray.__setstate__`` fill those pointer slots
with raw bytes from the file: reading the array then dereferences a forged pointer (a
segfault, or worse), all through allowlisted numpy constructors.

Only the pickled state is judged here, statically: the layout numpy would build from it must
be the layout numpy itself builds for that structure. Anything else is unsafe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np

NPY_ITEM_REFCOUNT: Final = 0x01  # also NPY_ITEM_HASOBJECT
NPY_LIST_PICKLE: Final = 0x02
NPY_ITEM_IS_POINTER: Final = 0x04
_OBJECT_FLAGS: Final = NPY_ITEM_REFCOUNT | NPY_LIST_PICKLE
_POINTER_FLAGS: Final = NPY_ITEM_REFCOUNT | NPY_LIST_PICKLE | NPY_ITEM_IS_POINTER
_FLEXIBLE_KINDS: Final = frozenset("SUV")
_STATE_VERSIONS: Final = frozenset({3, 4})
MAX_FIELDS: Final = 4096


class UnsafeDtype(ValueError):
    """The pickled dtype cannot be shown to describe its memory the way numpy would."""


@dataclass(frozen=True)
class DtypeLayout:
    itemsize: int
    has_objects: bool


# Resolves a symbolic value (a field's or a subarray's dtype) to its layout, or raises.
Resolver = Callable[[object], DtypeLayout]


@dataclass(frozen=True)
class _Parsed:
    kind: str
    itemsize: int
    has_objects: bool


@lru_cache(maxsize=1024)
def _parse(code: str) -> _Parsed | None:
    # Parsing a short type code is pure metadata work in numpy; it executes nothing.
    try:
        parsed = np.dtype(code)
    except (TypeError, ValueError):
        return None
    return _Parsed(parsed.kind, parsed.itemsize, parsed.hasobject)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def layout_of(code: str, state: object, resolve: Resolver, *, has_state: bool) -> DtypeLayout:
    """The layout of ``numpy.dtype(code)`` after ``__setstate__(state)`` (when ``has_state``).

    Raises :class:`UnsafeDtype` when numpy would accept the state but the memory it describes
    is inconsistent: object fields the flags do not announce, flags announcing objects that are
    not there, object fields overlapping other fields or running out of the item, a subarray
    whose size is not its base times its shape, fields or a subarray on a non-void kind.
    """
    parsed = _parse(code)
    if parsed is None:
        raise UnsafeDtype(f"numpy.dtype({code!r}) is not a type code numpy parses")
    if not has_state:
        return DtypeLayout(parsed.itemsize, parsed.has_objects)
    if not isinstance(state, tuple) or len(state) not in (8, 9):
        raise UnsafeDtype("a dtype state that is not the 8- or 9-tuple numpy writes")
    version, _endian, subarray, names, fields, elsize, _alignment, flags = state[:8]
    if version not in _STATE_VERSIONS or not (_int(elsize) and _int(flags)):
        raise UnsafeDtype("a dtype state with an unknown version or non-integer sizes or flags")
    assert isinstance(elsize, int)
    assert isinstance(flags, int)
    if -128 <= flags < 0:
        flags += 128  # numpy normalises flags pickled as a signed char
    itemsize = parsed.itemsize
    if parsed.kind in _FLEXIBLE_KINDS:
        itemsize = parsed.itemsize or elsize
        if (elsize > 0 and itemsize != elsize) or itemsize <= 0:
            raise UnsafeDtype(f"dtype {code!r} with a pickled item size of {elsize}")
    has_objects = parsed.has_objects
    if subarray is not None or names is not None or fields is not None:
        if parsed.kind != "V":
            raise UnsafeDtype(f"fields or a subarray pickled onto the non-void dtype {code!r}")
        if subarray is not None:
            if names is not None or fields is not None:
                raise UnsafeDtype("a dtype state with both a subarray and fields")
            has_objects = _subarray_objects(subarray, itemsize, resolve)
        else:
            has_objects = _fields_objects(names, fields, itemsize, resolve)
    if has_objects and flags & _OBJECT_FLAGS != _OBJECT_FLAGS:
        raise UnsafeDtype(
            f"dtype {code!r} holds Python objects but its pickled flags ({flags:#x}) do not say "
            "so: numpy would read raw bytes from the file as object pointers"
        )
    if not has_objects and flags & _POINTER_FLAGS:
        raise UnsafeDtype(
            f"dtype {code!r} holds no Python objects but its pickled flags ({flags:#x}) claim "
            "some: numpy would treat plain bytes as object pointers"
        )
    return DtypeLayout(itemsize, has_objects)


def _subarray_objects(subarray: object, itemsize: int, resolve: Resolver) -> bool:
    if not isinstance(subarray, tuple) or len(subarray) != 2:
        raise UnsafeDtype("a dtype subarray that is not a (dtype, shape) pair")
    base = resolve(subarray[0])
    shape = subarray[1]
    dims = (shape,) if _int(shape) else shape
    if not isinstance(dims, tuple) or not all(_int(d) and d >= 0 for d in dims):
        raise UnsafeDtype("a dtype subarray whose shape is not a tuple of sizes")
    if base.itemsize * math.prod(dims) != itemsize:
        raise UnsafeDtype("a dtype subarray whose size is not its base size times its shape")
    return base.has_objects


def _fields_objects(names: object, fields: object, itemsize: int, resolve: Resolver) -> bool:
    """Whether the fields hold objects; raises unless every field lies inside the item and no
    object field shares a byte with another field."""
    if not isinstance(names, tuple) or not isinstance(fields, dict):
        raise UnsafeDtype("dtype fields that are not a tuple of names and a literal dict")
    if len(names) > MAX_FIELDS or not all(isinstance(n, str) for n in names):
        raise UnsafeDtype("dtype field names that are not a short tuple of strings")
    spans: list[tuple[int, int, bool]] = []
    for name in names:
        entry = fields.get(name)
        if not isinstance(entry, tuple) or len(entry) not in (2, 3) or not _int(entry[1]):
            raise UnsafeDtype(f"dtype field {name!r} is not a (dtype, offset[, title]) tuple")
        field = resolve(entry[0])
        start = entry[1]
        assert isinstance(start, int)
        if start < 0 or start + field.itemsize > itemsize:
            raise UnsafeDtype(f"dtype field {name!r} lies outside its {itemsize}-byte item")
        spans.append((start, start + field.itemsize, field.has_objects))
    spans.sort()
    reach = reach_of_objects = 0
    for start, end, objects in spans:
        if start < reach_of_objects or (objects and start < reach):
            raise UnsafeDtype("a dtype whose object field overlaps another field")
        reach = max(reach, end)
        if objects:
            reach_of_objects = max(reach_of_objects, end)
    return any(objects for _, _, objects in spans)
