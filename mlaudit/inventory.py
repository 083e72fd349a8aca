"""The static inventory of what loading a model file would import, for every format that imports.

The load gate and the MLA1xx rules read the same inventory, so deselecting a rule can never
open the gate: the gate does not depend on which rules run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlaudit.errors import InputError
from mlaudit.scanners.pickle import (
    MalformedPickle,
    PickleScan,
    QualifiedName,
    ScanProblem,
    scan_file,
)
from mlaudit.scanners.pickle_policy import Classification, Verdict, classify
from mlaudit.sniff import ModelFormat


@dataclass(frozen=True)
class ImportedName(QualifiedName):
    """One global the file would import, where, and how the policy judges it."""

    module: str
    name: str
    offsets: tuple[int, ...]
    opcode: str
    classification: Classification


@dataclass(frozen=True)
class ImportInventory:
    names: tuple[ImportedName, ...] = ()
    problems: tuple[ScanProblem, ...] = ()
    pickle_scan: PickleScan | None = field(default=None, compare=False)
    extra_allowed: frozenset[str] = frozenset()

    def with_verdict(self, verdict: Verdict) -> tuple[ImportedName, ...]:
        return tuple(n for n in self.names if n.classification.verdict is verdict)

    def reclassified(self, extra_allowed: frozenset[str]) -> ImportInventory:
        """The same inventory judged with user-allowed globals (``allow_globals`` in config)."""
        names = tuple(
            ImportedName(
                n.module, n.name, n.offsets, n.opcode, classify(n.module, n.name, extra_allowed)
            )
            for n in self.names
        )
        return ImportInventory(names, self.problems, self.pickle_scan, extra_allowed)


def take_inventory(path: Path, model_format: ModelFormat) -> ImportInventory:
    if model_format.pickle_based:
        return _pickle_inventory(path)
    if model_format is ModelFormat.SKOPS:
        return _skops_inventory(path)
    return ImportInventory()


def _group(found: Iterable[tuple[str, str, int, str]]) -> tuple[ImportedName, ...]:
    """One entry per distinct import, with every offset it occurs at, in stream order."""
    offsets: dict[tuple[str, str], list[int]] = {}
    opcodes: dict[tuple[str, str], str] = {}
    for module, name, offset, opcode in found:
        offsets.setdefault((module, name), []).append(offset)
        opcodes.setdefault((module, name), opcode)
    return tuple(
        ImportedName(module, name, tuple(where), opcodes[(module, name)], classify(module, name))
        for (module, name), where in offsets.items()
    )


def _pickle_inventory(path: Path) -> ImportInventory:
    try:
        scan = scan_file(path)
    except MalformedPickle as error:
        dangerous = [
            i.qualified_name
            for i in error.imports_before
            if classify(i.module, i.name).verdict is Verdict.DANGEROUS
        ]
        warning = f"; before that point it imports {', '.join(dangerous)}" if dangerous else ""
        raise InputError(
            f"{path} is not a valid pickle stream: {error} at byte {error.offset}{warning}"
        ) from None
    names = _group((i.module, i.name, i.offset, i.opcode) for i in scan.imports)
    return ImportInventory(names, scan.problems, scan)


def _skops_inventory(path: Path) -> ImportInventory:
    """skops lists the types a file needs that skops does not trust by default."""
    try:
        from skops.io import get_untrusted_types
    except ImportError:
        raise InputError(
            f"{path} is a skops file; reading it needs skops: pip install 'mlaudit[skops]'"
        ) from None
    try:
        untrusted = get_untrusted_types(file=path)
    except Exception as error:  # skops raises assorted types for corrupt archives
        raise InputError(f"{path} is not a valid skops file: {error}") from None
    found = []
    for qualified in untrusted:
        module, _, name = qualified.rpartition(".")
        found.append((module, name, -1, "skops-type"))
    return ImportInventory(_group(found))
