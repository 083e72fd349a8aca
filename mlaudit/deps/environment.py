"""The running interpreter's installed distributions (``--env``), read from their metadata.

Nothing is imported or run: ``importlib.metadata`` reads the ``METADATA`` files on
``sys.path``. Where a name is installed twice, the first on ``sys.path`` wins, as for imports.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ENVIRONMENT_ORIGIN = f"environment ({sys.prefix})"


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    requires: tuple[str, ...]
    extras: tuple[str, ...]


def installed_distributions() -> dict[str, Installed]:
    found: dict[str, Installed] = {}
    for distribution in metadata.distributions():
        raw_name = distribution.metadata["Name"]
        if not raw_name:
            continue  # a broken install without metadata
        name = canonicalize_name(raw_name)
        if name in found:
            continue
        found[name] = Installed(
            name,
            distribution.version,
            tuple(distribution.requires or ()),
            tuple(distribution.metadata.get_all("Provides-Extra") or ()),
        )
    return dict(sorted(found.items()))


def _needed(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    try:
        return any(requirement.marker.evaluate({"extra": e}) for e in ("", *extras))
    except UndefinedEnvironmentName:
        return True


def closure(
    roots: Iterable[tuple[str, frozenset[str]]], installed: Mapping[str, Installed]
) -> set[str]:
    """The installed distributions ``roots`` (name, extras) need, themselves included."""
    reached: set[tuple[str, frozenset[str]]] = set()
    pending = [(canonicalize_name(n), e) for n, e in roots]
    while pending:
        name, extras = pending.pop()
        if (name, extras) in reached or name not in installed:
            continue
        reached.add((name, extras))
        for text in installed[name].requires:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if _needed(requirement, extras):
                pending.append(
                    (canonicalize_name(requirement.name), frozenset(requirement.extras))
                )
    return {name for name, _ in reached}


def own_closure(installed: Mapping[str, Installed]) -> set[str]:
    """mlaudit and everything it may use (every extra): installed because mlaudit is."""
    own = installed.get("mlaudit")
    extras = frozenset(own.extras) if own else frozenset()
    return closure([("mlaudit", extras)], installed)
