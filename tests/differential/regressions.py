"""Named cases the differential test keeps re-checking: each one a technique it once found or
that the oracle itself must handle.

Each generator takes the canary path (a dangerous call in the case would create it) and
returns the bytes; ``kind`` names the real loader that reads them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.differential.strategies import text_op


@dataclass(frozen=True)
class Regression:
    kind: str
    description: str
    build: Callable[[Path], bytes]


def _forged_object_dtype(canary: Path) -> bytes:
    """A joblib array whose dtype state says object fields without the object flags: joblib
    reads the raw bytes into an object array, so they become a forged object pointer."""
    dtype = (
        b"cnumpy\ndtype\n" + text_op("O") + b"\x89\x88\x87R(K\x03" + text_op("|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    state = (
        b"}(" + text_op("subclass") + b"cnumpy\nndarray\n" + text_op("shape")
        + b"J" + struct.pack("<i", 1) + b"\x85" + text_op("order") + text_op("C")
        + text_op("dtype") + dtype + text_op("allow_mmap") + b"\x89ub"
    )
    return (
        b"\x80\x04cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81" + state
        + b"\x41" * 8 + b"."
    )




def _object_array_shape_beyond_items(canary: Path) -> bytes:
    """An object ndarray whose pickled state declares 78 elements but lists 2: numpy's
    ``ndarray.__setstate__`` (all allowlisted) reads past the list and crashes the loader."""
    return (
        b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
        b"(K\x01KN\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|"
        b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]K\x01aX\x01\x00\x00\x00xatb."
    )


REGRESSIONS: Final[dict[str, Regression]] = {
    "forged_object_dtype": Regression(
        "joblib",
        "object dtype state without object flags: raw array bytes read as an object pointer",
        _forged_object_dtype,
    ),
    "object_array_shape_beyond_items": Regression(
        "pickle",
        "object ndarray state declaring more elements than it lists: numpy's setstate crashes",
        _object_array_shape_beyond_items,
    ),
}

# Bypasses still open in the scanner (the test asserting them is a strict xfail until fixed).
OPEN_BYPASSES: Final[frozenset[str]] = frozenset()
