"""Tabular data inputs: CSV, Parquet and NPZ, sniffed by content and read without pickle.

A file of more than ``max_rows`` rows is sampled as it is read, so memory is bounded by the
sample, not the file: CSV in chunks into a reservoir (Vitter's algorithm R, uniform over
every row; a CSV small enough to parse whole is sampled after parsing), Parquet by row group
(the exact row count is in its footer; only the row groups holding sampled rows are read),
NPZ through a memory map of the stored array (a compressed member is read whole). The row
count is always exact and the hash is of the whole file; :class:`Sampling` records how the
rows were taken, and the report says so.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError
from mlaudit.core.hashing import sha256_file

PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
# Rows a data file is read into memory at most; larger files are sampled uniformly.
MAX_ROWS = 500_000
# CSV files under this size are parsed whole (pandas infers each column's type from all of
# it); larger ones stream in chunks of CSV_CHUNK_ROWS.
CSV_WHOLE_BYTES = 64 << 20
CSV_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Sampling:
    """How a file's rows were taken: ``all`` of them, or a uniform sample drawn with ``seed``
    (``reservoir`` for a streamed CSV, ``uniform`` for one parsed whole, ``row-groups`` for
    Parquet, ``memory-map`` for NPZ)."""

    method: str
    rows_read: int
    rows_kept: int
    seed: int | None = None

    def document(self) -> dict[str, int | str | None]:
        return {
            "method": self.method, "rows_read": self.rows_read,
            "rows_kept": self.rows_kept, "seed": self.seed,
        }


@dataclass(frozen=True, eq=False)
class Dataset:
    """One data file in the role it plays: ``data`` (a sample), ``train`` or ``holdout``.

    ``frame`` holds the rows read: every row of the file unless ``sampling`` says otherwise.
    """

    role: str
    path: Path
    sha256: str
    frame: pd.DataFrame
    target: str | None
    sampling: Sampling | None = None

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def file_rows(self) -> int:
        """Rows in the file, exactly, whether or not all were read."""
        return self.sampling.rows_read if self.sampling is not None else self.rows

    @property
    def columns(self) -> list[str]:
        return [str(column) for column in self.frame.columns]

    @property
    def features(self) -> pd.DataFrame:
        if self.target is None:
            return self.frame
        return self.frame.drop(columns=[self.target])

    @property
    def labels(self) -> pd.Series | None:
        return None if self.target is None else self.frame[self.target]


def read_dataset(
    path: Path, role: str, target: str | None, *, max_rows: int = MAX_ROWS, seed: int = 0
) -> Dataset:
    """Read and check one data file, sampled to ``max_rows`` rows with ``seed`` if larger;
    every failure is an :class:`InputError` naming the file."""
    if not path.exists():
        raise InputError(f"{role} file {path} does not exist")
    if path.is_dir():
        raise InputError(f"{role} path {path} is a directory, not a data file")
    if path.stat().st_size == 0:
        raise InputError(f"{role} file {path} is empty")
    with path.open("rb") as handle:
        head = handle.read(4)
    rng = np.random.default_rng(seed)
    if head == PARQUET_MAGIC:
        frame, sampling = _read_parquet(path, max_rows, rng)
        resolved_target = target
    elif head == ZIP_MAGIC:
        frame, resolved_target, sampling = _read_npz(path, target, max_rows, rng)
    else:
        frame, sampling = _read_csv(path, max_rows, rng)
        resolved_target = target
    dataset = dataset_from_frame(
        frame, role, resolved_target, path=path, sha256=sha256_file(path),
        described=f"{role} file {path}",
    )
    if sampling.method != "all":
        sampling = dataclasses.replace(sampling, seed=seed)
    return dataclasses.replace(dataset, sampling=sampling)


def dataset_from_frame(
    frame: pd.DataFrame,
    role: str,
    target: str | None,
    *,
    path: Path,
    sha256: str,
    described: str,
) -> Dataset:
    """``frame``, read from a data file or given in memory, checked as every dataset is and
    made the dataset of ``role``: an :class:`InputError` naming it as ``described`` (``train
    file data/train.csv``, ``the train DataFrame``) when it has no columns or no rows, or not
    the ``target`` column. ``frame`` becomes the dataset's own, its column labels strings:
    relabelled in place, since a copy of a large training set would double its memory (a
    caller who keeps using the frame passes a copy)."""
    if frame.shape[1] == 0:
        raise InputError(f"{described} has no columns")
    if len(frame) == 0:
        raise InputError(f"{described} has columns but no rows")
    frame.columns = [str(column) for column in frame.columns]
    if target is not None and target not in frame.columns:
        shown = ", ".join(list(frame.columns)[:12])
        raise InputError(f"target column {target!r} is not in {described} (columns: {shown})")
    return Dataset(role, path, sha256, frame, target)


def _read_csv(path: Path, max_rows: int, rng: np.random.Generator) -> tuple[pd.DataFrame, Sampling]:
    try:
        if path.stat().st_size <= CSV_WHOLE_BYTES:
            return _kept(pd.read_csv(path, low_memory=False), max_rows, rng)
        with pd.read_csv(path, chunksize=CSV_CHUNK_ROWS) as chunks:
            return _reservoir(chunks, max_rows, rng)
    except UnicodeDecodeError:
        raise InputError(f"{path} is neither CSV text, Parquet nor NPZ") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise InputError(f"{path} is not valid CSV: {first_line}") from None


def _kept(
    frame: pd.DataFrame, max_rows: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, Sampling]:
    """``frame``, or a uniform sample of ``max_rows`` of its rows in file order."""
    if len(frame) <= max_rows:
        return frame, Sampling("all", len(frame), len(frame))
    chosen = np.sort(rng.choice(len(frame), max_rows, replace=False))
    sample = frame.iloc[chosen].reset_index(drop=True)
    return sample, Sampling("uniform", len(frame), max_rows)


def _reservoir(
    chunks: Iterator[pd.DataFrame], size: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, Sampling]:
    """A uniform sample of ``size`` rows of a stream of chunks (algorithm R), in file order.

    ``slots`` holds the file row each reservoir place keeps; row ``i`` (counting from 0)
    replaces place ``j``, drawn uniformly from ``0..i``, when ``j < size``. Only the rows
    still in the reservoir are kept between chunks.
    """
    slots = np.empty(size, dtype=np.int64)
    kept: pd.DataFrame | None = None
    seen = 0
    for chunk in chunks:
        index = np.arange(seen, seen + len(chunk))
        filled = max(0, min(size - seen, len(chunk)))
        slots[seen:seen + filled] = index[:filled]
        later = index[filled:]
        places = rng.integers(0, later + 1) if len(later) else later
        hit = places < size
        # The last row drawn for a place wins it, as in the row-by-row algorithm.
        places, rows = places[hit][::-1], later[hit][::-1]
        unique, first = np.unique(places, return_index=True)
        slots[unique] = rows[first]
        seen += len(chunk)
        chunk.index = index
        live = slots[: min(seen, size)]
        joined = chunk if kept is None else pd.concat([kept, chunk])
        kept = joined[joined.index.isin(live)]
    if kept is None:
        raise pd.errors.EmptyDataError("no rows")
    method = "all" if seen <= size else "reservoir"
    return kept.sort_index().reset_index(drop=True), Sampling(method, seen, len(kept))


def _read_parquet(
    path: Path, max_rows: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, Sampling]:
    try:
        from pyarrow import parquet
    except ImportError:
        raise InputError(
            f"{path} is Parquet; reading it needs pyarrow: pip install 'mlaudit[parquet]'"
        ) from None
    try:
        source = parquet.ParquetFile(path)
        total = source.metadata.num_rows
        if total <= max_rows:
            frame: pd.DataFrame = source.read().to_pandas()
            return frame, Sampling("all", total, len(frame))
        chosen = np.sort(rng.choice(total, max_rows, replace=False))
        starts = np.cumsum([0] + [
            source.metadata.row_group(g).num_rows for g in range(source.num_row_groups)
        ])
        parts = []
        for group in range(source.num_row_groups):
            low, high = np.searchsorted(chosen, starts[group : group + 2])
            if high > low:  # only the row groups that hold sampled rows are read
                table = source.read_row_group(group)
                parts.append(table.take(chosen[low:high] - starts[group]).to_pandas())
        sample = pd.concat(parts, ignore_index=True)
        return sample, Sampling("row-groups", total, len(sample))
    except Exception as error:  # pyarrow raises several unrelated types for corrupt files
        raise InputError(f"{path} is not valid Parquet: {error}") from None


def _read_npz(
    path: Path, target: str | None, max_rows: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, str | None, Sampling]:
    """NPZ with a 2-D array ``X`` and an optional 1-D ``y``; object arrays are refused.
    Arrays stored uncompressed are memory-mapped, so only the sampled rows are read."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n.removesuffix(".npy") for n in archive.namelist()]
            if "X" not in names:
                raise InputError(f"NPZ file {path} has no array named 'X' (found: {names})")
            features = _npz_array(path, archive, "X")
            labels = _npz_array(path, archive, "y") if "y" in names else None
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as error:
        # zipfile signals unsupported versions, compression and encryption this way
        raise InputError(f"{path} is not a readable NPZ archive: {error}") from None
    except ValueError as error:
        raise InputError(f"{path}: {error} (object arrays are never unpickled)") from None
    if features.ndim != 2:
        raise InputError(f"NPZ array X in {path} must be 2-D, not {features.ndim}-D")
    if labels is not None and labels.shape != (features.shape[0],):
        raise InputError(
            f"NPZ array y in {path} has shape {labels.shape}; expected ({features.shape[0]},)"
        )
    total = features.shape[0]
    if total > max_rows:
        chosen = np.sort(rng.choice(total, max_rows, replace=False))
        features = features[chosen]
        labels = labels[chosen] if labels is not None else None
        sampling = Sampling("memory-map", total, max_rows)
    else:
        sampling = Sampling("all", total, total)
    frame = pd.DataFrame(
        np.asarray(features), columns=[f"x{i}" for i in range(features.shape[1])]
    )
    if labels is None:
        if target is not None:
            raise InputError(f"--target {target} given but NPZ file {path} has no array 'y'")
        return frame, None, sampling
    name = target or "y"
    if name in frame.columns:
        raise InputError(f"target name {name!r} collides with a feature column of NPZ file {path}")
    frame[name] = np.asarray(labels)
    return frame, name, sampling


def _npz_array(path: Path, archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """Member ``name`` of an NPZ archive: memory-mapped where it is stored uncompressed,
    else decompressed; never unpickled (``allow_pickle=False``)."""
    info = archive.getinfo(f"{name}.npy")
    # Opened through zipfile first, which refuses what it does not support (encryption,
    # unknown versions and compressions) before any byte is mapped.
    with archive.open(info) as member:
        if info.compress_type != zipfile.ZIP_STORED:
            return np.asarray(np.lib.format.read_array(member, allow_pickle=False))
        header = (
            np.lib.format.read_array_header_1_0
            if np.lib.format.read_magic(member) == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = header(member)
        header_length = member.tell()
    if dtype.hasobject:
        raise ValueError(f"array {name} holds Python objects")
    with path.open("rb") as handle:
        # The local header: 30 bytes, then the name and an extra field of their own lengths.
        handle.seek(info.header_offset + 26)
        name_length, extra_length = np.frombuffer(handle.read(4), dtype="<u2")
    offset = info.header_offset + 30 + int(name_length) + int(extra_length) + header_length
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")
