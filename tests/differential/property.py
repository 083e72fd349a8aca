"""The differential property: a file the load gate allows hides no global from the scan.

For each case the scan gives a verdict (allowed or refused, and the imports it reported); the
oracle gives what the real loader resolved. A refused file always passes. An allowed file
passes only if every resolved global is among the reported imports (both sides compared after
the Python 2 renames the unpickler applies, and torch's own module renames) and the real
loader neither crashed nor hung on it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mlaudit.core.errors import InputError
from mlaudit.loaders.load_gate import LoadStatus, decide
from mlaudit.scanners.pickle import scan_bytes
from mlaudit.scanners.pickle_policy import Verdict, canonical_name, classify
from mlaudit.subject.build import open_model
from tests.differential.oracle import Oracle, Resolution

# torch.serialization's load_module_mapping: torch's unpickler renames these before resolving.
_TORCH_MODULE_RENAMES: Final = {"torch.tensor": "torch._tensor"}
_SUFFIXES: Final = {"pickle": ".pkl", "joblib": ".joblib", "torch": ".pt"}


@dataclass(frozen=True)
class Case:
    """One generated input: which real loader reads it, its bytes, and how it was made."""

    kind: str
    data: bytes
    label: str


@dataclass(frozen=True)
class ScanVerdict:
    accepted: bool
    reported: frozenset[str]


@dataclass(frozen=True)
class Outcome:
    """The property's judgement of one case; ``failed`` is a bypass or a crash on accept."""

    accepted: bool
    checked: int
    missing: tuple[str, ...]
    crashed: bool

    @property
    def failed(self) -> bool:
        return self.accepted and (bool(self.missing) or self.crashed)


def same_global(module: str, name: str) -> str:
    """The qualified name both sides are compared by."""
    module, name = canonical_name(module, name)
    return f"{_TORCH_MODULE_RENAMES.get(module, module)}.{name}"


def _reported(names: Iterable[tuple[str, str]]) -> frozenset[str]:
    return frozenset(same_global(module, name) for module, name in names)


def file_verdict(path: Path) -> ScanVerdict:
    """The full pipeline's verdict on a file: open_model, then the load gate.

    A file open_model refuses (InputError, exit 2) is never loaded, so it counts as refused.
    """
    try:
        artifact = open_model(str(path))
    except InputError:
        return ScanVerdict(False, frozenset())
    accepted = decide(artifact, [], trust_model=False).status is LoadStatus.ALLOWED
    return ScanVerdict(accepted, _reported((n.module, n.name) for n in artifact.inventory.names))


def gate_verdict(case: Case, directory: Path | None = None) -> ScanVerdict:
    """:func:`file_verdict` of a file holding the case's bytes."""
    with tempfile.TemporaryDirectory(dir=directory) as folder:
        path = Path(folder) / f"case{_SUFFIXES[case.kind]}"
        path.write_bytes(case.data)
        return file_verdict(path)


def fast_verdict(data: bytes) -> ScanVerdict:
    """The pickle scanner alone, judged as the gate judges its imports and problems.

    It may accept what the full gate refuses (it does not see sniffing or MLA107 issues), so a
    failure found through it is confirmed with :func:`gate_verdict` before it is counted.
    """
    try:
        scan = scan_bytes(data)
    except ValueError:  # a stream the scanner refuses outright is never loaded
        return ScanVerdict(False, frozenset())
    accepted = not scan.problems and all(
        classify(i.module, i.name).verdict is Verdict.ALLOWED for i in scan.imports
    )
    return ScanVerdict(accepted, _reported((i.module, i.name) for i in scan.imports))


def judge(verdict: ScanVerdict, resolution: Resolution) -> Outcome:
    resolved = {same_global(module, name) for module, name in resolution.globals}
    missing = tuple(sorted(resolved - verdict.reported))
    crashed = resolution.crashed or resolution.hung
    return Outcome(verdict.accepted, len(resolved) if verdict.accepted else 0, missing, crashed)


def evaluate(
    cases: Sequence[Case], oracle: Oracle, *, fast: bool, directory: Path | None = None
) -> list[Outcome]:
    """The property over a batch of cases (one oracle round trip for the whole batch).

    With ``fast``, pickle and joblib cases are judged by :func:`fast_verdict` and only the
    failures it finds are judged again by the full gate; torch cases always go through the
    gate (the zip reader is part of what is tested).
    """
    resolutions = oracle.resolve([(case.kind, case.data) for case in cases])
    outcomes = []
    for case, resolution in zip(cases, resolutions, strict=True):
        use_fast = fast and case.kind != "torch"
        verdict = fast_verdict(case.data) if use_fast else gate_verdict(case, directory)
        outcome = judge(verdict, resolution)
        if use_fast and outcome.failed:
            outcome = judge(gate_verdict(case, directory), resolution)
        outcomes.append(outcome)
    return outcomes
