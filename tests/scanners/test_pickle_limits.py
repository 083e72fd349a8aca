"""Resource safety: a hostile stream cannot make the scanner hang or exhaust memory."""

from __future__ import annotations

import pickle
import resource
import struct

import numpy as np
import pytest

from mlaudit.scanners.pickle import (
    LARGE_ARGUMENT_BYTES,
    MAX_STACK,
    MalformedPickle,
    scan_bytes,
)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_lying_length_is_malformed_without_allocating_it() -> None:
    before = _peak_rss_mib()
    lie = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"tiny" + b"."
    with pytest.raises(MalformedPickle, match="past the end"):
        scan_bytes(lie)
    assert _peak_rss_mib() - before < 64


def test_large_real_arguments_are_stepped_over() -> None:
    payload = {"weights": np.zeros(3 * LARGE_ARGUMENT_BYTES // 8), "blob": b"x" * (2 << 20)}
    scan = scan_bytes(pickle.dumps(payload, protocol=5))
    assert scan.problems == ()
    assert {i.qualified_name for i in scan.imports} <= {
        "numpy._core.numeric._frombuffer", "numpy.dtype", "numpy._core.multiarray._reconstruct",
        "numpy.ndarray",
    }


def test_large_value_used_as_an_import_name_is_a_dynamic_import() -> None:
    big = b"\x8e" + struct.pack("<Q", LARGE_ARGUMENT_BYTES) + b"o" * LARGE_ARGUMENT_BYTES
    stream = b"\x80\x04" + big + b"\x8c\x06system\x93)R."
    scan = scan_bytes(stream)
    assert [p.kind for p in scan.problems] == ["dynamic-import"]


def test_stack_explosion_stops_at_the_limit() -> None:
    stream = b"\x80\x04" + b"N" * (MAX_STACK + 70_000) + b"."
    with pytest.raises(MalformedPickle, match="limits"):
        scan_bytes(stream)


def test_time_budget_is_enforced() -> None:
    stream = b"\x80\x04" + b"N0" * 200_000 + b"N."
    with pytest.raises(MalformedPickle, match="time budget"):
        scan_bytes(stream, time_budget_s=0.0)
    assert scan_bytes(stream).problems == ()
