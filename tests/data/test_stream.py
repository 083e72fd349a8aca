"""Exact counts over every row of a file the loader only sampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlaudit.data.profile import profile_chunks
from mlaudit.data.stream import every_row
from mlaudit.subject.data import read_dataset


def _file(tmp_path: Path, suffix: str) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=6_000), "c": rng.choice(["a", "b"], 6_000)})
    frame.loc[5_990:, "x"] = np.nan  # ten missing values, all near the end
    frame.loc[5_000:5_006, "c"] = "rare"
    path = tmp_path / f"d.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(path, row_group_size=1_000)
    else:
        frame.to_csv(path, index=False)
    return path, frame


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_a_sampled_file_is_read_again_in_chunks(tmp_path: Path, suffix: str) -> None:
    path, frame = _file(tmp_path, suffix)
    dataset = read_dataset(path, "current", None, max_rows=500)
    assert dataset.rows == 500  # what the loader kept
    chunks, how = every_row(dataset, ["x", "c"])
    assert how.startswith("every row, streamed")
    profiles = profile_chunks(chunks, ["x", "c"], max_categories=10, sample=dataset.frame)
    assert (profiles["x"].rows, profiles["x"].missing) == (6_000, 10)
    assert profiles["x"].maximum == pytest.approx(frame["x"].max())
    assert profiles["c"].categories is not None
    assert profiles["c"].categories["rare"] == 7


def test_a_file_read_whole_is_not_read_again(tmp_path: Path) -> None:
    path, _ = _file(tmp_path, "parquet")
    dataset = read_dataset(path, "train", None)
    chunks, how = every_row(dataset, ["x"])
    assert how == "every row, in memory"
    assert next(chunks) is dataset.frame
