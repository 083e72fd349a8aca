"""MLA401's work units: a unit's result is the same computed alone, with others, or by a
worker that rebuilt its column from the subject; and the chunk size never changes a column's
statistics."""

from __future__ import annotations

import dataclasses
import re

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlaudit.core.findings import JsonValue
from mlaudit.pii.analysis import AnalysisSettings, PiiEngineError
from mlaudit.pii.analyzer import PiiEngine
from mlaudit.pii.entities import ENTITY_NAMES
from mlaudit.pii.tables import CHUNK_VALUES, ChunkRequest, TablePlan, analyse_column_chunks
from mlaudit.subject.build import Subject, build_subject

SETTINGS = AnalysisSettings(frozenset(ENTITY_NAMES))
ROWS = 60


def _frame(offset: int) -> pd.DataFrame:
    rng = np.random.default_rng(offset)
    people = ["Mary Smith", "John Jones", "Ann Lee", "Omar Khan"]
    return pd.DataFrame({
        "email": [f"user{offset + i}@example.com" for i in range(ROWS)],
        "full_name": [people[i % 4] for i in range(ROWS)],
        "notes": [f"call {people[i % 4]}, phone (212) 555-{1000 + i}" if i % 3 else "no contact"
                  for i in range(ROWS)],
        "score": rng.random(ROWS),
        "y": rng.integers(0, 2, ROWS),
    })


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> Subject:
    root = tmp_path_factory.mktemp("tables")
    _frame(0).to_csv(root / "train.csv", index=False)
    _frame(1000).to_csv(root / "holdout.csv", index=False)
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), root / "model.joblib")
    return build_subject(str(root / "model.joblib"), data=None, train=root / "train.csv",
                         holdout=root / "holdout.csv", target="y", source=None, requirements=[])


def _plan(subject: Subject, chunk_values: int, sample_rows: int = 45) -> TablePlan:
    return TablePlan.of(
        [(d.role, d.frame) for d in subject.datasets], seed=5, sample_rows=sample_rows,
        chunk_values=chunk_values, settings=SETTINGS,
    )


def test_a_unit_gives_the_same_result_alone_together_or_on_a_worker(
    engine: PiiEngine, subject: Subject
) -> None:
    plan = _plan(subject, chunk_values=7)
    units = len(plan.request.units)
    # Per file: 45 sampled e-mail addresses in 7 chunks, 4 names in one, notes in several.
    assert [c.chunks for c in plan.request.layout][:2] == [7, 1]
    assert units > 16
    together = plan.analyse(list(range(units)))
    alone = [result for i in range(units) for result in plan.analyse([i])]
    # A worker rebuilds the columns from the subject it holds; any split of the units.
    on_workers: list[JsonValue] = []
    for start, end in [(0, 3), (3, 17), (17, units)]:
        params = {**plan.request.params(list(range(start, end))), "threads": 1}
        on_workers.extend(analyse_column_chunks(subject, params))
    assert together == alone == on_workers
    assert plan.run(plan.analyse, round_values=10) == together
    scans = plan.scans(together)
    found = {s.column: {e.entity for e in s.scan.entities} for s in scans[0] if s.scan}
    assert found == {"email": {"EMAIL_ADDRESS"}, "full_name": {"PERSON"},
                     "notes": {"PERSON", "PHONE_NUMBER"}}


def test_the_chunk_size_never_changes_a_column_s_statistics(
    engine: PiiEngine, subject: Subject
) -> None:
    small, whole = _plan(subject, chunk_values=7), _plan(subject, chunk_values=CHUNK_VALUES)
    assert len(whole.request.units) == 6  # one unit a column
    assert small.scans(small.run(small.analyse)) == whole.scans(whole.run(whole.analyse))


def test_rounds_check_the_budget_and_say_how_far_the_scan_is(
    engine: PiiEngine, subject: Subject
) -> None:
    plan = _plan(subject, chunk_values=7, sample_rows=0)
    said: list[str] = []
    checks: list[None] = []
    plan.run(plan.analyse, round_values=30, progress=said.append,
             check_budget=lambda: checks.append(None))
    assert len(said) == len(checks) > 2
    assert re.fullmatch(rf"cells scanned \d+/{2 * 3 * ROWS}, ETA \d+ s", said[0])
    assert said[-1] == f"cells scanned {2 * 3 * ROWS}/{2 * 3 * ROWS}, ETA 0 s"


def test_the_request_travels_as_plain_values(subject: Subject) -> None:
    request = _plan(subject, chunk_values=7).request
    params = request.params([0, 1])
    assert len(repr(params)) < 1_000
    single = dataclasses.replace(request.settings, n_jobs=1)  # a task runs no processes
    assert ChunkRequest.from_params(params) == dataclasses.replace(request, settings=single)


def test_a_worker_whose_data_is_not_the_run_s_says_so(engine: PiiEngine, subject: Subject) -> None:
    params = _plan(subject, chunk_values=7).request.params([0])
    params["layout"] = [[0, 0, 99]]
    with pytest.raises(PiiEngineError, match="not the one the run planned"):
        analyse_column_chunks(subject, params)
    params["layout"] = "not a layout"
    with pytest.raises(PiiEngineError, match="malformed"):
        analyse_column_chunks(subject, params)
