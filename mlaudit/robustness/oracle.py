"""One batched, cached, counted question to the model: is this point adversarial?

Attacks never call the model themselves. They hand the oracle the points of every sample
still in flight, and the oracle answers them in one ``predict`` call, so an attack pays the
model's per-call overhead once per step rather than once per sample. Repeated points (common
once integers are rounded) are answered from a cache and not counted: ``queries`` is the number
of rows sent to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlaudit.robustness.space import FeatureSpace
from mlaudit.subject.model_info import LoadedModel, Task


class ModelOutputError(Exception):
    """The model answered with something an attack cannot read."""


@dataclass(eq=False)
class Oracle:
    """Answers for the rows of ``base`` (the attacked samples, as model inputs).

    Classification: a point is adversarial when the predicted label differs from the sample's
    ``reference`` (its true label). Regression: when the prediction moves more than
    ``tolerance`` from ``reference`` (the clean prediction).
    """

    model: LoadedModel
    space: FeatureSpace
    base: pd.DataFrame
    reference: np.ndarray
    tolerance: float | None = None
    queries: np.ndarray = field(init=False)
    calls: int = field(init=False, default=0)
    _cache: dict[bytes, bool] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.queries = np.zeros(len(self.base), dtype=np.int64)

    @property
    def regression(self) -> bool:
        return self.model.task is Task.REGRESSION

    def predict(self, rows: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """The model's outputs for ``unit`` points of samples ``rows``, counted, uncached."""
        if len(rows) == 0:
            return np.empty(0)
        frame = self.space.frame(self.base, rows, unit)
        outputs = np.asarray(self.model.predict(frame))
        self.calls += 1
        np.add.at(self.queries, rows, 1)
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        if outputs.shape != (len(rows),):
            raise ModelOutputError(
                f"the model's predict returned shape {outputs.shape} for {len(rows)} rows; "
                f"expected ({len(rows)},)"
            )
        return outputs

    def judge(self, rows: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        reference = self.reference[rows]
        if self.regression:
            assert self.tolerance is not None
            moved = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
            return np.asarray(moved > self.tolerance)
        return np.asarray(outputs != reference)

    def adversarial(self, rows: np.ndarray, unit: np.ndarray, *, cached: bool = True) -> np.ndarray:
        """Whether each point is adversarial for its sample.

        ``cached=False`` is for random probes, which practically never repeat: hashing them
        would cost time and memory for no hits.
        """
        if not cached:
            return self.judge(rows, self.predict(rows, unit))
        keys = np.ascontiguousarray(np.column_stack([rows.astype(np.float64), unit]))
        raw = [key.tobytes() for key in keys]
        answers = np.zeros(len(rows), dtype=bool)
        pending: dict[bytes, list[int]] = {}
        for position, key in enumerate(raw):
            known = self._cache.get(key)
            if known is None:
                pending.setdefault(key, []).append(position)
            else:
                answers[position] = known
        if pending:
            first = np.array([positions[0] for positions in pending.values()])
            verdicts = self.judge(rows[first], self.predict(rows[first], unit[first]))
            for (key, positions), verdict in zip(pending.items(), verdicts, strict=True):
                self._cache[key] = bool(verdict)
                answers[positions] = verdict
        return answers
