"""mlaudit.scanners.sniff: model formats are detected from content, never from the name."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from mlaudit.core.errors import InputError
from mlaudit.scanners.sniff import ModelFormat, is_entry_point, sniff_model_format

_X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
_Y = np.array([0, 1, 1, 0])


@pytest.fixture(scope="module")
def fitted() -> LogisticRegression:
    return LogisticRegression().fit(_X, _Y)


@pytest.fixture(scope="module")
def onnx_bytes(fitted: LogisticRegression) -> bytes:
    from skl2onnx import to_onnx

    return to_onnx(fitted, _X[:1].astype(np.float32)).SerializeToString()


# --- pickle ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("name", ["model.pkl", "model.onnx", "model.skops", "model", "m.npz"])
def test_pickle_protocols_detected_regardless_of_name(
    tmp_path: Path, fitted: LogisticRegression, protocol: int, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(fitted, protocol=protocol))
    assert sniff_model_format(path) is ModelFormat.PICKLE


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize(
    "obj",
    [{"a": [1, 2.5, "s"]}, [1, 2, 3], ("t", None), 7, None, "text", b"raw"],
    ids=["dict", "list", "tuple", "int", "none", "str", "bytes"],
)
def test_pickles_of_plain_objects_detected(tmp_path: Path, protocol: int, obj: object) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    assert sniff_model_format(path) is ModelFormat.PICKLE


def test_joblib_file_is_pickle_based(tmp_path: Path, fitted: LogisticRegression) -> None:
    import joblib

    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    detected = sniff_model_format(path)
    assert detected.pickle_based


def test_pickle_based_property() -> None:
    assert ModelFormat.PICKLE.pickle_based
    assert ModelFormat.JOBLIB.pickle_based
    assert not ModelFormat.SKOPS.pickle_based
    assert not ModelFormat.ONNX.pickle_based
    assert not ModelFormat.ENTRY_POINT.pickle_based


# --- skops -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.skops", "model.pkl"])
def test_skops_file_detected(tmp_path: Path, fitted: LogisticRegression, name: str) -> None:
    import skops.io

    path = tmp_path / name
    skops.io.dump(fitted, path)
    assert sniff_model_format(path) is ModelFormat.SKOPS


# --- ONNX --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.onnx", "model.pkl", "model.bin"])
def test_skl2onnx_model_detected(tmp_path: Path, onnx_bytes: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(onnx_bytes)
    assert sniff_model_format(path) is ModelFormat.ONNX


def test_onnx_helper_model_detected(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    model = helper.make_model(graph, producer_name="test")
    model.metadata_props.add(key="k", value="v")
    onnx.checker.check_model(model)
    path = tmp_path / "model.pkl"
    path.write_bytes(model.SerializeToString())
    assert sniff_model_format(path) is ModelFormat.ONNX


def test_truncated_onnx_is_not_onnx(tmp_path: Path, onnx_bytes: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_bytes[:-7])
    with pytest.raises(InputError):
        sniff_model_format(path)


def test_onnx_with_trailing_garbage_is_not_onnx(tmp_path: Path, onnx_bytes: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_bytes + b"\xff\xff\xff")
    with pytest.raises(InputError):
        sniff_model_format(path)


def test_protobuf_without_graph_is_not_onnx(tmp_path: Path) -> None:
    # field 1 (ir_version, varint) = 8 and field 2 (producer_name, bytes) = "x"; no graph.
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08\x12\x01x")
    with pytest.raises(InputError):
        sniff_model_format(path)


# --- data and other archives -------------------------------------------------------------


def test_npz_is_sniffed_as_npz(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    with path.open("wb") as handle:
        np.savez(handle, X=np.ones((2, 2)), y=np.zeros(2))
    assert sniff_model_format(path) is ModelFormat.NPZ


def test_hdf5_magic_is_keras_h5(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    assert sniff_model_format(path) is ModelFormat.KERAS_H5


def test_torch_zip_is_sniffed_by_its_data_pkl(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x04N.")
        archive.writestr("model/version", "3")
    assert sniff_model_format(path) is ModelFormat.PYTORCH


def test_zip_of_no_known_kind_is_a_generic_archive(tmp_path: Path) -> None:
    """Still audited for archive tricks (MLA103), though nothing in it can be run."""
    path = tmp_path / "model.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert sniff_model_format(path) is ModelFormat.ZIP_ARCHIVE


def test_file_starting_like_a_zip_but_not_one_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    with pytest.raises(InputError, match="not a readable one"):
        sniff_model_format(path)


def _zip_with_invalid_utf8_name() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("\u00e9.txt", b"x")  # non-ASCII: the UTF-8 name flag is set
    return buffer.getvalue().replace("\u00e9".encode(), b"\xff\xfe")


def _zip_needing_future_version() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", "{}")
    raw = bytearray(buffer.getvalue())
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<H", raw, central + 6, 0xFF)  # version needed to extract: 25.5
    return bytes(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            _zip_with_invalid_utf8_name(),
            id="invalid-utf8-name",
        ),
        pytest.param(
            _zip_needing_future_version(),
            id="future-zip-version",
        ),
    ],
)
def test_corrupt_zip_is_input_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(raw)
    with pytest.raises(InputError):
        sniff_model_format(path)


@pytest.mark.parametrize(
    "raw",
    [
        b"a,b,label\n1,2,0\n3,4,1\n",
        b"x0,x1,y\n0.1,0.2,1\n",
        b"# README\n\nSome documentation.\n",
        b"def predict(x):\n    return x\n",
        b'{"model": "not really"}\n',
        b"",
        b"\x00" * 64,
        bytes(range(256)),
        b"\x80\x06garbage",  # protocol byte out of range
    ],
)
def test_text_csv_and_junk_are_input_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(raw)
    with pytest.raises(InputError, match="unknown model format"):
        sniff_model_format(path)


def test_plain_english_text_is_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello world\n")
    with pytest.raises(InputError):
        sniff_model_format(path)


def test_random_bytes_are_input_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(1234)
    path = tmp_path / "model.bin"
    path.write_bytes(b"\xfe" + rng.bytes(4096))  # 0xFE is no pickle opcode nor ONNX key
    with pytest.raises(InputError):
        sniff_model_format(path)


# --- entry points ------------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["pkg.mod:fn", "pkg:fn", "a_b.c_d:Factory.build", "_x:_y"])
def test_is_entry_point_true(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_entry_point(reference)


@pytest.mark.parametrize(
    "reference",
    [
        "model.pkl",
        "pkg.mod",
        "pkg.mod:",
        ":fn",
        "1pkg:fn",
        "pkg:1fn",
        "a:b:c",
        "pkg/mod:fn",
        "pkg mod:fn",
        "",
        "C:\\models\\m.pkl",
    ],
)
def test_is_entry_point_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert not is_entry_point(reference)


def test_is_entry_point_false_when_a_file_has_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_entry_point("pkg.mod:fn")
    (tmp_path / "pkg.mod:fn").write_bytes(pickle.dumps(1))
    assert not is_entry_point("pkg.mod:fn")


# --- property-based ----------------------------------------------------------------------


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from([b"", b"\x80", b"PK\x03\x04", b"\x89HDF\r\n\x1a\n", b"\x08", b"("]),
    body=st.binary(max_size=600),
)
def test_random_bytes_give_a_format_or_input_error(
    tmp_path: Path, prefix: bytes, body: bytes
) -> None:
    path = tmp_path / "fuzz.bin"
    path.write_bytes(prefix + body)
    try:
        result = sniff_model_format(path)
    except InputError:
        return
    assert isinstance(result, ModelFormat)
    assert result is not ModelFormat.ENTRY_POINT


@settings(max_examples=200, deadline=None)
@given(reference=st.text(max_size=40))
def test_is_entry_point_never_raises_on_text(reference: str) -> None:
    assert isinstance(is_entry_point(reference), bool)


def test_is_entry_point_long_reference_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_entry_point("a" * 300 + ":fn")
