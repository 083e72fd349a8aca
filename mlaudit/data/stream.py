"""Every row of a data file, in chunks, whether or not the loader kept them all.

The subject reads a large file as a uniform sample (:mod:`mlaudit.subject.data`), which is what
the statistics of drift and the model's queries need. Counts a finding states as facts (this
many values missing, outside the training range, never seen) must be exact, so for a sampled
file the file is read again here, chunk by chunk: Parquet by row group batches through pyarrow,
CSV in pandas chunks. Memory holds one chunk of the selected columns, never the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from mlaudit.subject.data import Dataset

CHUNK_ROWS = 250_000


def every_row(dataset: Dataset, columns: Sequence[str]) -> tuple[Iterator[pd.DataFrame], str]:
    """The rows of ``dataset``'s file in chunks of ``columns``, and how they were read."""
    sampling = dataset.sampling
    if sampling is None or sampling.method == "all":
        return iter([dataset.frame]), "every row, in memory"
    path = dataset.path
    # Only a Parquet file is sampled by row group (a small one is read whole: "all").
    if sampling.method == "row-groups":
        return _parquet(path, columns), "every row, streamed by Parquet row group"
    if sampling.method in ("reservoir", "uniform"):
        return _csv(path, columns), "every row, streamed in CSV chunks"
    # A memory-mapped NPZ array: the sample is what there is to read.
    return iter([dataset.frame]), f"a uniform sample of {dataset.rows} rows ({sampling.method})"


def _parquet(path: Path, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
    from pyarrow import parquet

    source = parquet.ParquetFile(path)
    for batch in source.iter_batches(batch_size=CHUNK_ROWS, columns=list(columns)):
        yield batch.to_pandas()


def _csv(path: Path, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
    with pd.read_csv(path, chunksize=CHUNK_ROWS, usecols=list(columns)) as chunks:
        yield from chunks
