"""Tabular data inputs: CSV, Parquet and NPZ, sniffed by content and read without pickle."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError
from mlaudit.core.hashing import sha256_file

PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True, eq=False)
class Dataset:
    """One data file in the role it plays: ``data`` (a sample), ``train`` or ``holdout``."""

    role: str
    path: Path
    sha256: str
    frame: pd.DataFrame
    target: str | None

    @property
    def rows(self) -> int:
        return len(self.frame)

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


def read_dataset(path: Path, role: str, target: str | None) -> Dataset:
    """Read and check one data file; every failure is an :class:`InputError` naming the file."""
    if not path.exists():
        raise InputError(f"{role} file {path} does not exist")
    if path.is_dir():
        raise InputError(f"{role} path {path} is a directory, not a data file")
    if path.stat().st_size == 0:
        raise InputError(f"{role} file {path} is empty")
    with path.open("rb") as handle:
        head = handle.read(4)
    if head == PARQUET_MAGIC:
        frame = _read_parquet(path)
        resolved_target = target
    elif head == ZIP_MAGIC:
        frame, resolved_target = _read_npz(path, target)
    else:
        frame = _read_csv(path)
        resolved_target = target
    return dataset_from_frame(
        frame, role, resolved_target, path=path, sha256=sha256_file(path),
        described=f"{role} file {path}",
    )


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


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, low_memory=False)
    except UnicodeDecodeError:
        raise InputError(f"{path} is neither CSV text, Parquet nor NPZ") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise InputError(f"{path} is not valid CSV: {first_line}") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        from pyarrow import parquet
    except ImportError:
        raise InputError(
            f"{path} is Parquet; reading it needs pyarrow: pip install 'mlaudit[parquet]'"
        ) from None
    try:
        frame: pd.DataFrame = parquet.read_table(path).to_pandas()
        return frame
    except Exception as error:  # pyarrow raises several unrelated types for corrupt files
        raise InputError(f"{path} is not valid Parquet: {error}") from None


def _read_npz(path: Path, target: str | None) -> tuple[pd.DataFrame, str | None]:
    """NPZ with a 2-D array ``X`` and an optional 1-D ``y``; object arrays are refused."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "X" not in archive.files:
                raise InputError(f"NPZ file {path} has no array named 'X' (found: {archive.files})")
            features = archive["X"]
            labels = archive["y"] if "y" in archive.files else None
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as error:
        # zipfile signals unsupported versions, compression and encryption this way
        raise InputError(f"{path} is not a readable NPZ archive: {error}") from None
    except ValueError as error:
        raise InputError(f"{path}: {error} (object arrays are never unpickled)") from None
    if features.ndim != 2:
        raise InputError(f"NPZ array X in {path} must be 2-D, not {features.ndim}-D")
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
    if labels is None:
        if target is not None:
            raise InputError(f"--target {target} given but NPZ file {path} has no array 'y'")
        return frame, None
    if labels.shape != (features.shape[0],):
        raise InputError(
            f"NPZ array y in {path} has shape {labels.shape}; expected ({features.shape[0]},)"
        )
    name = target or "y"
    if name in frame.columns:
        raise InputError(f"target name {name!r} collides with a feature column of NPZ file {path}")
    frame[name] = labels
    return frame, name
