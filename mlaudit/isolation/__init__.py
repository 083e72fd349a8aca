"""Isolation of the model: the worker process it is loaded and queried in, and what confined it.

``auto`` confines the worker with every layer the platform has, ``strict`` refuses to run
(exit 2) unless every layer is in force, ``none`` loads the model in mlaudit's own process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlaudit.core.findings import JsonValue
from mlaudit.isolation.sandbox import LAYER_NAMES, Confinement

ISOLATION_MODES = ("auto", "strict", "none")


@dataclass(frozen=True)
class IsolationRecord:
    """``run.isolation`` of the report: the mode, each layer in force or not, and why."""

    mode: str
    layers: Mapping[str, bool]
    notes: tuple[str, ...]

    @staticmethod
    def of(mode: str, confinement: Confinement | None, *notes: str) -> IsolationRecord:
        layers = dict(confinement.layers) if confinement else {}
        return IsolationRecord(
            mode,
            {name: bool(layers.get(name)) for name in LAYER_NAMES},
            (*(confinement.notes if confinement else ()), *notes),
        )

    def to_json(self) -> dict[str, JsonValue]:
        return {"mode": self.mode, "layers": dict(self.layers), "notes": list(self.notes)}
