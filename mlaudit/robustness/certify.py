"""MLA203's certified radii, a chunk of attacked rows at a time, here or on a cluster.

Certification has no randomness: a row's radius depends on the row and the ensemble alone,
so any split of the rows into chunks gives the same radii.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mlaudit.core.findings import JsonValue
from mlaudit.robustness.chunks import chunk_indices, chunk_slice, encode_radii
from mlaudit.robustness.sample import AttackSample, SampleRequest, rebuilt_sample
from mlaudit.robustness.trees import LeafTable, Verifier, leaf_table
from mlaudit.subject.build import Subject
from mlaudit.subject.model_info import LoadedModel, Task

# The name under which certification is delegated to a cluster.
CERTIFIED_RADII = "certified-radii"
# Rows per chunk. A row of a large forest takes about a second to certify (a million leaves),
# a small ensemble's a few milliseconds: 25 rows is a unit worth a task on a large model and
# still leaves the budget many chances to stop.
CERTIFY_CHUNK_ROWS = 25


@dataclass(frozen=True, eq=False)
class Certification:
    """The L∞ verifier of a tree ensemble over the attacked rows of a sample."""

    sample: AttackSample
    table: LeafTable

    @cached_property
    def _verifier(self) -> Verifier:
        return Verifier(self.table, self.sample.space, "linf")

    @cached_property
    def _raw(self) -> np.ndarray:
        return self.sample.frame.to_numpy(dtype=np.float64)

    def chunk(self, chunk: int) -> list[JsonValue]:
        """The certified radius of every attacked row of chunk ``chunk`` (null: inf)."""
        sample, verifier = self.sample, self._verifier
        attacked = sample.correct
        classes = list(self.table.classes or ())
        radii = []
        for row in attacked[chunk_slice(chunk, len(attacked), CERTIFY_CHUNK_ROWS)]:
            if sample.task is Task.REGRESSION:
                radii.append(verifier.radius(
                    self._raw[row], None, reference=float(sample.clean[row]),
                    tolerance=sample.tolerance,
                ))
            else:
                radii.append(verifier.radius(self._raw[row], classes.index(sample.clean[row])))
        return encode_radii(np.array(radii, dtype=np.float64))


def certify_chunks(
    model: LoadedModel, subject: Subject, params: Mapping[str, JsonValue]
) -> JsonValue:
    """The chunks ``params["indices"]`` certified here (a cluster task), on the sample the
    request in ``params`` rebuilds: one list of radii per chunk."""
    sample = rebuilt_sample(model, subject, SampleRequest.from_params(params))
    if not _LAST_CERTIFICATION or _LAST_CERTIFICATION[0].sample is not sample:
        # Reading the leaves and checking them against the model's scores costs seconds on
        # a large forest: kept for the worker's next chunks of the same sample.
        _LAST_CERTIFICATION[:] = [
            Certification(sample, leaf_table(model.estimator, sample.frame))
        ]
    certification = _LAST_CERTIFICATION[0]
    return [certification.chunk(c) for c in chunk_indices(params["indices"])]


_LAST_CERTIFICATION: list[Certification] = []
