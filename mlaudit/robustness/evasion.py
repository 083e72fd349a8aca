"""The black-box evasion attack (MLA201, and MLA203's upper bound) a chunk of rows at a time,
here or on a cluster.

Chunk ``c`` attacks its rows with a generator seeded from the run seed, the norm and ``c``
alone, starting from the whole sample's rows as donors: its radii do not depend on the other
chunks, so any split of the chunks between tasks gives the same radii.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from mlaudit.core.findings import JsonValue
from mlaudit.robustness.chunks import chunk_indices, chunk_slice, encode_radii
from mlaudit.robustness.hopskipjump import AttackSettings, hop_skip_jump
from mlaudit.robustness.sample import AttackSample, SampleRequest, rebuilt_sample
from mlaudit.subject.build import Subject
from mlaudit.subject.model_info import LoadedModel

# The name under which attack chunks are delegated to a cluster.
EVASION_CHUNKS = "evasion-chunks"
# Rows per chunk. Every chunk pays the attack's model calls (some 50 to 200 per norm, each with
# the model's fixed per-call overhead) once, so chunks are large: one for the quick profile's
# 50 rows, two for standard's 200, ten for thorough's 1000.
ATTACK_CHUNK_ROWS = 100
# Tree ensembles' extra starts: more donor rows, and random points searched from every start
# (a tree ensemble's boundary is a union of box faces, easily missed from one start).
TREE_DONORS = 16
TREE_STARTS = 6


def attack_settings(model: LoadedModel, norm: str, budget: int) -> AttackSettings:
    """The evasion attack for ``model`` under ``norm`` with ``budget`` queries per row.

    Tree ensembles get cheap extra starts. The settings depend on the model, never on the
    rule, so every rule attacking a model under a norm runs, and shares, the same attack.
    """
    from mlaudit.robustness.trees import is_tree_ensemble

    if is_tree_ensemble(model.estimator):
        return AttackSettings(norm, budget, donors=TREE_DONORS, starts=TREE_STARTS)
    return AttackSettings(norm, budget)


def chunk_rng(seed: int, norm: str, chunk: int) -> np.random.Generator:
    """Chunk ``chunk``'s generator under ``norm``: the run seed's, independent per chunk."""
    salt = int.from_bytes(hashlib.sha256(f"evasion-attack:{norm}".encode()).digest()[:4], "big")
    return np.random.default_rng([seed, salt, chunk])


@dataclass(frozen=True, eq=False)
class ChunkedAttack:
    """The attack ``settings`` on the attacked rows of ``sample``, by chunk."""

    model: LoadedModel
    sample: AttackSample
    settings: AttackSettings
    seed: int
    check_budget: Callable[[], None] = field(default=lambda: None)

    @cached_property
    def _donors(self) -> np.ndarray:
        return self.sample.space.to_unit(self.sample.frame)

    def chunk(self, chunk: int) -> JsonValue:
        """Chunk ``chunk``'s radii (null: no flip found), model queries and calls."""
        attacked = self.sample.correct
        rows = attacked[chunk_slice(chunk, len(attacked), ATTACK_CHUNK_ROWS)]
        oracle = self.sample.oracle(self.model)
        outcome = hop_skip_jump(
            oracle, rows, self.settings, chunk_rng(self.seed, self.settings.norm, chunk),
            donors=self._donors, donor_outputs=self.sample.clean,
            check_budget=self.check_budget,
        )
        return {
            "radii": encode_radii(outcome.distance),
            "queries": int(oracle.queries.sum()),
            "calls": oracle.calls,
        }


def attack_params(
    request: SampleRequest, settings: AttackSettings
) -> dict[str, JsonValue]:
    """What a cluster task needs to attack the chunks as the rule would."""
    return {**request.params(), "norm": settings.norm, "budget": settings.budget}


def attack_chunks(
    model: LoadedModel, subject: Subject, params: Mapping[str, JsonValue]
) -> JsonValue:
    """The chunks ``params["indices"]`` attacked here (a cluster task), on the sample the
    request in ``params`` rebuilds: one value per chunk, as :meth:`ChunkedAttack.chunk`."""
    request = SampleRequest.from_params(params)
    norm, budget = params["norm"], params["budget"]
    if not isinstance(norm, str) or not isinstance(budget, int):
        raise ValueError("an attack request needs a norm and a query budget")
    attack = ChunkedAttack(
        model, rebuilt_sample(model, subject, request), attack_settings(model, norm, budget),
        request.seed,
    )
    return [attack.chunk(c) for c in chunk_indices(params["indices"])]
