"""Scanning one table in the test's own process, as MLA401 does without a cluster."""

from __future__ import annotations

import pandas as pd

from mlaudit.pii.analysis import AnalysisSettings
from mlaudit.pii.columns import ColumnScan
from mlaudit.pii.tables import CHUNK_VALUES, TablePlan


def scan_frame(
    frame: pd.DataFrame, settings: AnalysisSettings, *, sample_rows: int, seed: int = 0
) -> list[ColumnScan]:
    plan = TablePlan.of(
        [("data", frame)], seed=seed, sample_rows=sample_rows, chunk_values=CHUNK_VALUES,
        settings=settings,
    )
    (scans,) = plan.scans(plan.run(plan.analyse))
    return scans
