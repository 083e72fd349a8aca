"""Data files larger than the row cap are sampled as they are read, with exact counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlaudit.core.hashing import sha256_file
from mlaudit.subject import data
from mlaudit.subject.data import read_dataset


def _frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"row": np.arange(rows), "value": np.arange(rows) * 0.5,
                         "label": np.arange(rows) % 3})


def test_small_files_are_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    _frame(50).to_csv(path, index=False)
    dataset = read_dataset(path, "train", "label", max_rows=100)
    assert dataset.rows == dataset.file_rows == 50
    assert dataset.sampling is not None
    assert dataset.sampling.method == "all"


@pytest.mark.parametrize("whole_bytes", [0, 1 << 30], ids=["streamed", "parsed-whole"])
def test_csv_is_sampled_uniformly_with_the_exact_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_bytes: int
) -> None:
    monkeypatch.setattr(data, "CSV_WHOLE_BYTES", whole_bytes)
    monkeypatch.setattr(data, "CSV_CHUNK_ROWS", 700)
    path = tmp_path / "d.csv"
    _frame(5000).to_csv(path, index=False)
    first = read_dataset(path, "train", "label", max_rows=400, seed=3)
    assert first.rows == 400
    assert first.file_rows == 5000
    assert first.sha256 == sha256_file(path)
    assert first.sampling is not None
    assert first.sampling.document() == {
        "method": "reservoir" if whole_bytes == 0 else "uniform",
        "rows_read": 5000, "rows_kept": 400, "seed": 3,
    }
    rows = first.frame["row"].to_numpy()
    assert len(set(rows)) == 400
    assert (np.diff(rows) > 0).all()
    assert (first.frame["value"] == first.frame["row"] * 0.5).all()  # rows kept whole
    # Uniform over the file: as many sampled rows in each half, within chance.
    assert 150 < (rows < 2500).sum() < 250
    again = read_dataset(path, "train", "label", max_rows=400, seed=3)
    pd.testing.assert_frame_equal(first.frame, again.frame)


def test_parquet_reads_only_the_row_groups_it_samples(tmp_path: Path) -> None:
    import pyarrow as pa
    from pyarrow import parquet

    path = tmp_path / "d.parquet"
    parquet.write_table(pa.Table.from_pandas(_frame(3000)), path, row_group_size=500)
    dataset = read_dataset(path, "train", "label", max_rows=10, seed=1)
    assert dataset.rows == 10
    assert dataset.file_rows == 3000
    assert dataset.sampling is not None
    assert dataset.sampling.method == "row-groups"
    rows = dataset.frame["row"].to_numpy()
    assert (np.diff(rows) > 0).all()
    assert (dataset.frame["label"] == rows % 3).all()


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_npz_is_memory_mapped_and_sampled(tmp_path: Path, save: object) -> None:
    path = tmp_path / "d.npz"
    features = np.arange(6000, dtype=np.float64).reshape(2000, 3)
    save(path, X=features, y=np.arange(2000) % 2)  # type: ignore[operator]
    dataset = read_dataset(path, "train", None, max_rows=100)
    assert dataset.rows == 100
    assert dataset.file_rows == 2000
    assert dataset.target == "y"
    assert dataset.sampling is not None
    assert dataset.sampling.method == "memory-map"
    first = dataset.frame["x0"].to_numpy()
    np.testing.assert_array_equal(dataset.frame["x1"].to_numpy(), first + 1)
    np.testing.assert_array_equal(dataset.frame["y"].to_numpy(), (first // 3) % 2)
    whole = read_dataset(path, "train", None)
    np.testing.assert_array_equal(whole.frame[["x0", "x1", "x2"]].to_numpy(), features)


def test_npz_object_arrays_are_refused_unread(tmp_path: Path) -> None:
    from mlaudit.core.errors import InputError

    path = tmp_path / "d.npz"
    np.savez(path, X=np.array([[object()]], dtype=object))
    with pytest.raises(InputError, match="never unpickled"):
        read_dataset(path, "train", None)
