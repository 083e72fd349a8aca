"""mlaudit.subject.data.read_dataset: CSV, Parquet and NPZ read by content, never unpickled."""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaudit.core.errors import InputError
from mlaudit.subject.data import Dataset, dataset_from_frame, read_dataset


class _Canary:
    """Unpickling this creates the file at ``path`` (Path.touch on it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _object_npz(path: Path, canary: Path, *, in_y: bool = False) -> Path:
    payload = np.empty((2, 1), dtype=object)
    payload[0, 0] = _Canary(canary)
    payload[1, 0] = _Canary(canary)
    if in_y:
        y = np.empty(2, dtype=object)
        y[0] = _Canary(canary)
        y[1] = _Canary(canary)
        np.savez(path, X=np.zeros((2, 2)), y=y, allow_pickle=True)
    else:
        np.savez(path, X=payload, allow_pickle=True)
    return path


# --- CSV ---------------------------------------------------------------------------------


def test_csv_with_target(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("a,b,label\n1,2.5,0\n3,4.5,1\n5,6.5,0\n")
    dataset = read_dataset(path, "train", "label")
    assert isinstance(dataset, Dataset)
    assert dataset.role == "train"
    assert dataset.path == path
    assert dataset.rows == 3
    assert dataset.columns == ["a", "b", "label"]
    assert dataset.target == "label"
    assert list(dataset.features.columns) == ["a", "b"]
    assert dataset.labels is not None
    assert dataset.labels.tolist() == [0, 1, 0]
    assert dataset.features["b"].tolist() == [2.5, 4.5, 6.5]


def test_csv_without_target(tmp_path: Path) -> None:
    path = tmp_path / "sample.csv"
    path.write_text("a,b\n1,2\n")
    dataset = read_dataset(path, "data", None)
    assert dataset.target is None
    assert dataset.labels is None
    assert dataset.features is dataset.frame
    assert dataset.columns == ["a", "b"]


def test_extension_does_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"  # CSV content under a Parquet name
    path.write_text("a,b\n1,2\n")
    assert read_dataset(path, "data", None).columns == ["a", "b"]


def test_header_only_csv_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a,b,c\n")
    with pytest.raises(InputError, match=f"holdout file {path} has columns but no rows"):
        read_dataset(path, "holdout", None)


def test_a_frame_is_checked_as_a_file_is(tmp_path: Path) -> None:
    """The checks after reading are one function: a DataFrame passes or fails them as the
    file it would be saved to does, named as the caller describes it."""
    frame = pd.DataFrame({0: [1.0, 2.0], "y": [0, 1]})
    dataset = dataset_from_frame(frame, "train", "y", path=Path("<frame>"), sha256="0" * 64,
                                 described="the train DataFrame")
    assert (dataset.columns, dataset.target, dataset.rows) == (["0", "y"], "y", 2)
    for broken, why in [
        (pd.DataFrame(), "the train DataFrame has no columns"),
        (pd.DataFrame({"a": []}), "the train DataFrame has columns but no rows"),
        (pd.DataFrame({"a": [1]}),
         r"target column 'y' is not in the train DataFrame \(columns: a\)"),
    ]:
        with pytest.raises(InputError, match=why):
            dataset_from_frame(broken, "train", "y", path=Path("<frame>"), sha256="0" * 64,
                               described="the train DataFrame")
    path = tmp_path / "t.csv"
    path.write_text("a\n1\n")
    with pytest.raises(InputError, match=f"target column 'y' is not in train file {path}"):
        read_dataset(path, "train", "y")


def test_blank_lines_only_csv_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n\n")
    with pytest.raises(InputError):
        read_dataset(path, "data", None)


def test_malformed_csv_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('a,b\n1,2\n3,4,5,6\n"unterminated\n')
    with pytest.raises(InputError, match="not valid CSV"):
        read_dataset(path, "data", None)


def test_target_column_missing_lists_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("alpha,beta,gamma\n1,2,3\n")
    with pytest.raises(InputError) as info:
        read_dataset(path, "train", "label")
    message = str(info.value)
    assert "'label'" in message
    assert "alpha, beta, gamma" in message
    assert str(path) in message


def test_target_missing_message_truncates_long_column_lists(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    names = [f"c{i}" for i in range(30)]
    path.write_text(",".join(names) + "\n" + ",".join("1" for _ in names) + "\n")
    with pytest.raises(InputError) as info:
        read_dataset(path, "train", "label")
    assert "c11" in str(info.value)
    assert "c12" not in str(info.value)


# --- Parquet -----------------------------------------------------------------------------


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "holdout.bin"
    frame = pd.DataFrame({"f1": [0.1, 0.2, 0.3], "f2": ["a", "b", "c"], "y": [1, 0, 1]})
    frame.to_parquet(path, engine="pyarrow")
    dataset = read_dataset(path, "holdout", "y")
    assert dataset.columns == ["f1", "f2", "y"]
    assert dataset.rows == 3
    pd.testing.assert_frame_equal(dataset.features, frame[["f1", "f2"]], check_dtype=False)
    assert dataset.labels is not None
    assert dataset.labels.tolist() == [1, 0, 1]


def test_parquet_written_with_pyarrow_directly(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": [1, 2], "target": [0, 1]}), path)
    dataset = read_dataset(path, "train", "target")
    assert dataset.labels is not None
    assert dataset.labels.tolist() == [0, 1]


def test_parquet_empty_rows_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pd.DataFrame({"a": pd.Series([], dtype="float64")}).to_parquet(path)
    with pytest.raises(InputError, match="no rows"):
        read_dataset(path, "data", None)


def test_corrupt_parquet_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1" + b"\x00garbage" * 10)
    with pytest.raises(InputError, match="not valid Parquet"):
        read_dataset(path, "data", None)


def test_truncated_parquet_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": range(50)}).to_parquet(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError):
        read_dataset(path, "data", None)


def test_parquet_target_missing(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pd.DataFrame({"a": [1], "b": [2]}).to_parquet(path)
    with pytest.raises(InputError, match=r"columns: a, b"):
        read_dataset(path, "train", "y")


# --- NPZ ---------------------------------------------------------------------------------


def test_npz_with_x_and_y_default_target(tmp_path: Path) -> None:
    path = tmp_path / "train.npz"
    features = np.arange(6, dtype=float).reshape(3, 2)
    np.savez(path, X=features, y=np.array([0, 1, 1]))
    dataset = read_dataset(path, "train", None)
    assert dataset.target == "y"
    assert dataset.columns == ["x0", "x1", "y"]
    assert dataset.features.to_numpy().tolist() == features.tolist()
    assert dataset.labels is not None
    assert dataset.labels.tolist() == [0, 1, 1]


def test_npz_target_names_the_label_column(tmp_path: Path) -> None:
    path = tmp_path / "train.npz"
    np.savez(path, X=np.ones((2, 3)), y=np.array([1, 0]))
    dataset = read_dataset(path, "train", "label")
    assert dataset.target == "label"
    assert dataset.columns == ["x0", "x1", "x2", "label"]
    assert dataset.labels is not None
    assert dataset.labels.name == "label"
    assert dataset.labels.tolist() == [1, 0]
    assert list(dataset.features.columns) == ["x0", "x1", "x2"]


def test_npz_without_y(tmp_path: Path) -> None:
    path = tmp_path / "sample.npz"
    np.savez_compressed(path, X=np.zeros((4, 2)))
    dataset = read_dataset(path, "data", None)
    assert dataset.target is None
    assert dataset.labels is None
    assert dataset.columns == ["x0", "x1"]
    assert dataset.rows == 4


def test_npz_without_y_but_target_given_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "sample.npz"
    np.savez(path, X=np.zeros((4, 2)))
    with pytest.raises(InputError, match="no array 'y'"):
        read_dataset(path, "data", "label")


def test_npz_without_x_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, features=np.zeros((2, 2)))
    with pytest.raises(InputError, match="no array named 'X'"):
        read_dataset(path, "data", None)


@pytest.mark.parametrize("shape", [(4,), (2, 2, 2), ()])
def test_npz_x_not_2d_is_input_error(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.zeros(shape))
    with pytest.raises(InputError, match="must be 2-D"):
        read_dataset(path, "data", None)


@pytest.mark.parametrize("y_shape", [(3,), (2, 1), ()])
def test_npz_y_wrong_shape_is_input_error(tmp_path: Path, y_shape: tuple[int, ...]) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.zeros((2, 2)), y=np.zeros(y_shape))
    with pytest.raises(InputError, match="array y"):
        read_dataset(path, "data", None)


def test_npz_zero_rows_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.zeros((0, 2)))
    with pytest.raises(InputError, match="no rows"):
        read_dataset(path, "data", None)


def test_npz_zero_columns_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.zeros((2, 0)))
    with pytest.raises(InputError, match="no columns"):
        read_dataset(path, "data", None)


def test_canary_payload_is_live(tmp_path: Path) -> None:
    """Control: the payload used below really creates the canary when unpickled."""
    canary = tmp_path / "control-canary"
    pickle.loads(pickle.dumps(_Canary(canary)))
    assert canary.exists()


@pytest.mark.parametrize("in_y", [False, True], ids=["object-X", "object-y"])
def test_npz_object_array_is_refused_and_never_unpickled(tmp_path: Path, in_y: bool) -> None:
    canary = tmp_path / "canary"
    path = _object_npz(tmp_path / "evil.npz", canary, in_y=in_y)
    assert not canary.exists()
    with pytest.raises(InputError, match="never unpickled"):
        read_dataset(path, "data", None)
    assert not canary.exists()


def test_npz_object_array_with_target_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = _object_npz(tmp_path / "evil.npz", canary)
    with pytest.raises(InputError):
        read_dataset(path, "train", "y")
    assert not canary.exists()


def test_truncated_npz_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, X=np.zeros((50, 5)), y=np.zeros(50))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError):
        read_dataset(path, "data", None)


def _patched_npz(patches: list[tuple[bytes, int, int]]) -> bytes:
    """A valid NPZ with 16-bit fields patched in every header that starts with a signature."""
    buffer = io.BytesIO()
    np.savez(buffer, X=np.ones((3, 2)))
    raw = bytearray(buffer.getvalue())
    for signature, offset, value in patches:
        index = raw.find(signature)
        while index != -1:
            struct.pack_into("<H", raw, index + offset, value)
            index = raw.find(signature, index + 4)
    return bytes(raw)


_LOCAL, _CENTRAL = b"PK\x03\x04", b"PK\x01\x02"


@pytest.mark.parametrize(
    "patches",
    [
        pytest.param(
            [(_CENTRAL, 6, 0xFF)],
            id="extract-version-too-high",
        ),
        pytest.param(
            [(_CENTRAL, 10, 99), (_LOCAL, 8, 99)],
            id="unsupported-compression",
        ),
        pytest.param(
            [(_CENTRAL, 8, 0x41), (_LOCAL, 6, 0x41)],
            id="strong-encryption",
        ),
        pytest.param(
            [(_CENTRAL, 8, 0x01), (_LOCAL, 6, 0x01)],
            id="encrypted-member",
        ),
    ],
)
def test_npz_with_unsupported_zip_features_is_input_error(
    tmp_path: Path, patches: list[tuple[bytes, int, int]]
) -> None:
    path = tmp_path / "odd.npz"
    path.write_bytes(_patched_npz(patches))
    with pytest.raises(InputError):
        read_dataset(path, "data", None)


def test_npz_target_colliding_with_feature_name_does_not_drop_a_feature(tmp_path: Path) -> None:
    path = tmp_path / "train.npz"
    np.savez(path, X=np.array([[1.0, 2.0], [3.0, 4.0]]), y=np.array([0, 1]))
    try:
        dataset = read_dataset(path, "train", "x0")
    except InputError:
        return
    assert dataset.features.shape == (2, 2)
    assert dataset.features.to_numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_zip_that_is_not_npz_is_input_error(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(InputError):
        read_dataset(path, "data", None)


# --- filesystem errors and garbage -------------------------------------------------------


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_dataset(tmp_path / "nope.csv", "train", None)


def test_directory_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        read_dataset(tmp_path, "train", None)


def test_empty_file_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.touch()
    with pytest.raises(InputError, match="is empty"):
        read_dataset(path, "data", None)


@pytest.mark.parametrize(
    "raw",
    [
        bytes(range(256)) * 4,
        b"\xff\xfe\x00\x01\x80\x81garbage\xc3\x28",
        b"\x89HDF\r\n\x1a\n" + b"\x00" * 64,
        b"PK\x03\x04" + b"\x00" * 40,
        b"\x80\x04\x95" + b"\x00" * 20,
    ],
)
def test_binary_garbage_is_input_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(raw)
    with pytest.raises(InputError):
        read_dataset(path, "data", None)


def test_error_messages_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"\xff\xfe\x00\x01\x80\x81")
    with pytest.raises(InputError, match=str(path.name)):
        read_dataset(path, "data", None)


# --- digest ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "parquet", "npz"])
def test_sha256_is_of_the_file_bytes(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"d.{kind}"
    if kind == "csv":
        path.write_text("a,b\n1,2\n")
    elif kind == "parquet":
        pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    else:
        np.savez(path, X=np.ones((2, 2)))
    dataset = read_dataset(path, "data", None)
    assert dataset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# --- property-based ----------------------------------------------------------------------

_MAGICS = st.sampled_from([b"", b"PAR1", b"PK\x03\x04", b"\x93NUMPY", b"a,b\n", b"\xef\xbb\xbf"])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prefix=_MAGICS, body=st.binary(max_size=512))
def test_arbitrary_bytes_give_dataset_or_input_error(
    tmp_path: Path, prefix: bytes, body: bytes
) -> None:
    path = tmp_path / "fuzz.dat"
    path.write_bytes(prefix + body)
    try:
        dataset = read_dataset(path, "data", None)
    except InputError:
        return
    assert isinstance(dataset, Dataset)
    assert dataset.rows > 0
    assert len(dataset.columns) > 0


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(alphabet=st.sampled_from(list('ab1.,"\n\r\t -e;')), max_size=200),
    target=st.sampled_from([None, "a", "b", "y"]),
)
def test_arbitrary_csv_like_text_gives_dataset_or_input_error(
    tmp_path: Path, text: str, target: str | None
) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_text(text, encoding="utf-8")
    try:
        dataset = read_dataset(path, "data", target)
    except InputError:
        return
    assert isinstance(dataset, Dataset)
    if target is not None:
        assert dataset.labels is not None
