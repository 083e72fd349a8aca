"""MLA201's attack and MLA203's certification in fixed chunks: the same radii however the
chunks are grouped, ordered or placed (here or in a cluster task), and the time budget stops
between chunks."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from mlaudit.core.findings import JsonValue
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.robustness.certify import CERTIFY_CHUNK_ROWS, Certification, certify_chunks
from mlaudit.robustness.chunks import (
    ChunkPlan,
    chunk_count,
    decode_radii,
    encode_radii,
    map_chunks,
)
from mlaudit.robustness.evasion import (
    ATTACK_CHUNK_ROWS,
    ChunkedAttack,
    attack_chunks,
    attack_params,
    attack_settings,
    chunk_rng,
)
from mlaudit.robustness.sample import AttackSample, SampleRequest, build_sample, rebuilt_sample
from mlaudit.robustness.trees import Verifier, leaf_table
from mlaudit.subject.build import Subject, build_subject
from mlaudit.subject.model_info import LoadedModel
from tests.robustness.models import separated

REQUEST = SampleRequest(
    seed=7, size=230, immutable=(), categorical=(), relative_epsilon=None,
    against_labels=True, threshold=0.0, tolerance_share=0.5,
)


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, Subject]:
    root: Path = tmp_path_factory.mktemp("certify")
    frame, labels = separated(rows=300, gap=0.05, seed=5)
    estimator = RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0)
    estimator.fit(frame, labels)
    joblib.dump(estimator, root / "forest.joblib")
    frame.assign(label=labels).to_csv(root / "data.csv", index=False)
    subject = build_subject(
        str(root / "forest.joblib"), data=root / "data.csv", train=None, holdout=None,
        target="label", source=None, requirements=[],
    )
    return wrap_estimator(estimator, "sklearn", "test"), subject


@pytest.fixture(scope="module")
def sample(forest: tuple[LoadedModel, Subject]) -> AttackSample:
    return build_sample(*forest, REQUEST)


def test_chunks_give_the_rows_radii_in_any_grouping_and_order(
    forest: tuple[LoadedModel, Subject], sample: AttackSample
) -> None:
    model, _ = forest
    table = leaf_table(model.estimator, sample.frame)
    chunks = chunk_count(len(sample.correct), CERTIFY_CHUNK_ROWS)
    assert chunks >= 3  # several chunks, the last one short
    together = Certification(sample, table)
    forward = [together.chunk(c) for c in range(chunks)]
    # Each chunk on a fresh certification, last first: the same values.
    backward = [Certification(sample, table).chunk(c) for c in reversed(range(chunks))]
    assert backward[::-1] == forward
    radii = np.concatenate([decode_radii(v) for v in forward])
    # The radii are the verifier's, row by row.
    verifier = Verifier(table, sample.space, "linf")
    raw = sample.frame.to_numpy(dtype=np.float64)
    classes = list(table.classes or ())
    expected = [verifier.radius(raw[r], classes.index(sample.clean[r])) for r in sample.correct]
    np.testing.assert_array_equal(radii, expected)
    assert np.isfinite(radii).any()


def test_a_cluster_task_rebuilds_the_same_rows_and_radii(
    forest: tuple[LoadedModel, Subject], sample: AttackSample
) -> None:
    model, subject = forest
    local = Certification(sample, leaf_table(model.estimator, sample.frame))
    params: dict[str, JsonValue] = {**REQUEST.params(), "indices": [2, 0]}
    # Plain JSON both ways, as it crosses the pipe and the network.
    assert SampleRequest.from_params(params) == REQUEST
    assert certify_chunks(model, subject, params) == [local.chunk(2), local.chunk(0)]


def test_radii_cross_as_plain_json_and_bad_answers_are_refused() -> None:
    radii = np.array([0.25, np.inf, 0.0])
    assert encode_radii(radii) == [0.25, None, 0.0]
    np.testing.assert_array_equal(decode_radii(encode_radii(radii)), radii)
    malformed: list[JsonValue] = ["0.1", [True], ["x"], [[0.1]]]
    for bad in malformed:
        with pytest.raises(ValueError, match=r"a chunk.s radi"):
            decode_radii(bad)


def test_chunks_stop_between_waves_when_the_next_would_overrun() -> None:
    asked: list[list[int]] = []
    notes: list[str] = []

    def compute(chunks: list[int]) -> list[JsonValue]:
        asked.append(chunks)
        time.sleep(0.05)
        return [c for c in chunks]

    # Room for about two waves of 0.05 s: the third is projected past the stop.
    plan = ChunkPlan(rows=100, size=10, wave=2, stop_at=time.monotonic() + 0.12,
                     what="rows certified")
    run = map_chunks(plan, compute, progress=notes.append, check_budget=lambda: None)
    assert asked[0] == [0, 1]
    assert run.values == [c for wave in asked for c in wave]
    assert run.scaled_down == (
        f"rows certified: {10 * len(run.values)} of 100 within the time the rule allows for it"
    )
    assert notes[0].startswith("rows certified 20/100, ETA ")
    # Without a limit every chunk runs, in order.
    everything = map_chunks(
        ChunkPlan(rows=95, size=10, wave=3, stop_at=time.monotonic() + 60, what="rows attacked"),
        lambda chunks: [c for c in chunks], progress=notes.append, check_budget=lambda: None,
    )
    assert everything == type(everything)(list(range(10)))
    assert notes[-1] == "rows attacked 95/95, ETA 0 s"


def test_attack_chunks_give_the_same_radii_in_any_grouping_order_or_task(
    forest: tuple[LoadedModel, Subject], sample: AttackSample
) -> None:
    model, subject = forest
    settings = attack_settings(model, "linf", 150)
    chunks = chunk_count(len(sample.correct), ATTACK_CHUNK_ROWS)
    assert chunks >= 3
    together = ChunkedAttack(model, sample, settings, REQUEST.seed)
    forward = [together.chunk(c) for c in range(chunks)]
    backward = [
        ChunkedAttack(model, sample, settings, REQUEST.seed).chunk(c)
        for c in reversed(range(chunks))
    ]
    assert backward[::-1] == forward
    params: dict[str, JsonValue] = {**attack_params(REQUEST, settings), "indices": [2, 0]}
    assert attack_chunks(model, subject, params) == [forward[2], forward[0]]
    radii = [r for part in forward if isinstance(part, dict) for r in _list(part["radii"])]
    assert len(radii) == len(sample.correct)
    assert any(r is not None for r in radii)
    # Every chunk draws its own randomness, from the seed, the norm and its number alone.
    draws = [chunk_rng(REQUEST.seed, "linf", c).random() for c in (0, 1, 0)]
    assert draws[0] == draws[2] != draws[1]
    assert chunk_rng(REQUEST.seed, "l2", 0).random() != draws[0]


def _list(value: JsonValue) -> list[JsonValue]:
    assert isinstance(value, list)
    return value


def test_a_worker_keeps_the_sample_it_rebuilt_for_the_next_chunks(
    forest: tuple[LoadedModel, Subject],
) -> None:
    model, subject = forest
    first = rebuilt_sample(model, subject, REQUEST)
    assert rebuilt_sample(model, subject, REQUEST) is first
    other = dataclasses.replace(REQUEST, seed=REQUEST.seed + 1)
    assert rebuilt_sample(model, subject, other) is not first
    assert not first.frame.equals(rebuilt_sample(model, subject, other).frame)
