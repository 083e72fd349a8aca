"""Is a version affected? OSV's evaluation of ECOSYSTEM ranges, with PEP 440 ordering.

The algorithm is the OSV schema's own ("Evaluation"): sort a range's events by version
(``introduced: "0"`` first), walk them, and a version is affected after an ``introduced`` at
or below it until a ``fixed`` at or below it, or a ``last_affected`` below it; a ``limit``
caps the range. Versions compare with ``packaging.version``. An entry's explicit
``versions`` list also counts, compared as text and as PEP 440 versions (``1.0`` is
``1.0.0``). Event versions that are not PEP 440 are ignored; so is a range that has only
such events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from packaging.version import InvalidVersion, Version

Events = Sequence[Mapping[str, str]]
_ZERO = Version("0")


@lru_cache(maxsize=1 << 16)
def parse_version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _event_version(event: Mapping[str, str]) -> tuple[str, Version] | None:
    for kind in ("introduced", "fixed", "last_affected", "limit"):
        if kind in event:
            text = event[kind]
            version = _ZERO if kind == "introduced" and text == "0" else parse_version(text)
            return (kind, version) if version is not None else None
    return None


def _parsed(events: Events) -> list[tuple[str, Version]]:
    parsed = [p for p in map(_event_version, events) if p is not None]
    return sorted(parsed, key=lambda p: p[1])  # stable: equal versions keep their order


def in_range(version: Version, events: Events) -> bool:
    parsed = _parsed(events)
    limits = [v for kind, v in parsed if kind == "limit"]
    if limits and not any(version < limit for limit in limits):
        return False
    affected = False
    for kind, at in parsed:
        if kind == "introduced" and version >= at:
            affected = True
        elif (kind == "fixed" and version >= at) or (kind == "last_affected" and version > at):
            affected = False
    return affected


def listed(version: str, versions: Sequence[str]) -> bool:
    if version in versions:
        return True
    parsed = parse_version(version)
    return parsed is not None and any(parse_version(v) == parsed for v in versions)


def affects(version: str, ranges: Sequence[Events], versions: Sequence[str]) -> bool:
    """Whether ``version`` is in an entry's explicit list or any of its ECOSYSTEM ranges."""
    if listed(version, versions):
        return True
    parsed = parse_version(version)
    return parsed is not None and any(in_range(parsed, events) for events in ranges)


def fixed_versions(version: str, ranges: Sequence[Events]) -> list[str]:
    """The ``fixed`` versions above ``version`` in the ranges that contain it, lowest first."""
    parsed = parse_version(version)
    if parsed is None:
        return []
    fixed = {
        at
        for events in ranges
        if in_range(parsed, events)
        for kind, at in _parsed(events)
        if kind == "fixed" and at > parsed
    }
    return [str(v) for v in sorted(fixed)]
