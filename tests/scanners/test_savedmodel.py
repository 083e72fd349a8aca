"""TensorFlow SavedModels: sniffed by content, walked without TensorFlow, scanned not run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper

from mlaudit.core.errors import InputError
from mlaudit.core.findings import Severity
from mlaudit.scanners.savedmodel import scan_savedmodel
from mlaudit.scanners.sniff import ModelFormat, sniff_model_format
from tests.conftest import TARGET, Runner, Workspace
from tests.fixtures import savedmodels as sm

_SAMPLES: list[Callable[[], bytes]] = [
    sm.benign_savedmodel, *(sample.build for sample in sm.HOSTILE_OPS),
    sm.asset_outside_folder, sm.unknown_top_level_field,
]


def _write(tmp_path: Path, data: bytes, name: str = "saved_model.pb") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- the samples say what they are meant to, to the real protobuf parser -------------------

_STRING, _INT64, _MESSAGE = 9, 3, 11
_OPTIONAL, _REPEATED = 1, 3
_SCHEMA: dict[str, list[tuple[str, int, int | str, int]]] = {
    # Field numbers from TensorFlow's .proto files; only the fields the samples write.
    "SavedModel": [("saved_model_schema_version", 1, _INT64, _OPTIONAL),
                   ("meta_graphs", 2, "MetaGraphDef", _REPEATED)],
    "MetaGraphDef": [("meta_info_def", 1, "MetaInfoDef", _OPTIONAL),
                     ("graph_def", 2, "GraphDef", _OPTIONAL),
                     ("asset_file_def", 6, "AssetFileDef", _REPEATED)],
    "MetaInfoDef": [("tags", 4, _STRING, _REPEATED)],
    "GraphDef": [("node", 1, "NodeDef", _REPEATED),
                 ("library", 2, "FunctionDefLibrary", _OPTIONAL),
                 ("versions", 4, "VersionDef", _OPTIONAL)],
    "VersionDef": [("producer", 1, _INT64, _OPTIONAL)],
    "FunctionDefLibrary": [("function", 1, "FunctionDef", _REPEATED)],
    "FunctionDef": [("signature", 1, "OpDef", _OPTIONAL),
                    ("node_def", 3, "NodeDef", _REPEATED)],
    "OpDef": [("name", 1, _STRING, _OPTIONAL)],
    "NodeDef": [("name", 1, _STRING, _OPTIONAL), ("op", 2, _STRING, _OPTIONAL),
                ("input", 3, _STRING, _REPEATED)],
    "AssetFileDef": [("filename", 2, _STRING, _OPTIONAL)],
}


def _saved_model_class() -> Any:
    proto = descriptor_pb2.FileDescriptorProto(
        name="mlaudit_tf_subset.proto", package="tfsubset", syntax="proto3"
    )
    for message_name, fields in _SCHEMA.items():
        message = proto.message_type.add(name=message_name)
        for field_name, number, kind, label in fields:
            declared = message.field.add(name=field_name, number=number, label=label)
            if isinstance(kind, str):
                declared.type, declared.type_name = _MESSAGE, f".tfsubset.{kind}"
            else:
                declared.type = kind
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tfsubset.SavedModel"))


def _protobuf_ops(data: bytes) -> set[str]:
    """The ops protobuf itself reads: graph nodes and library function nodes."""
    model = _saved_model_class().FromString(data)
    ops = set()
    for meta in model.meta_graphs:
        ops |= {n.op for n in meta.graph_def.node}
        ops |= {n.op for f in meta.graph_def.library.function for n in f.node_def}
    return ops


@pytest.mark.parametrize("sample", sm.HOSTILE_OPS, ids=lambda s: s.build.__name__)
def test_protobuf_reads_each_hostile_op(sample: sm.HostileSample) -> None:
    assert sample.op in _protobuf_ops(sample.build())


def test_protobuf_reads_the_benign_sample_as_written() -> None:
    ops = _protobuf_ops(sm.benign_savedmodel())
    assert {"MatMul", "SaveV2", "RestoreV2", "StatefulPartitionedCall", "Identity"} <= ops
    assert _protobuf_ops(sm.unknown_top_level_field()) == {"Placeholder", "PyFunc"}


# --- the scanner --------------------------------------------------------------------------


def test_benign_savedmodel_has_no_issue(tmp_path: Path) -> None:
    report = scan_savedmodel(_write(tmp_path, sm.benign_savedmodel()))
    assert report.issues == ()
    assert report.format_detail == "tf-savedmodel (1 meta graphs, 13 nodes, 1 functions)"


@pytest.mark.parametrize("sample", sm.HOSTILE_OPS, ids=lambda s: s.build.__name__)
def test_hostile_op_is_reported(tmp_path: Path, sample: sm.HostileSample) -> None:
    report = scan_savedmodel(_write(tmp_path, sample.build()))
    [issue] = report.issues
    assert (issue.rule_id, issue.key, issue.severity.value) == (
        "MLA104", f"tf-op:{sample.op}", sample.severity
    )
    assert issue.pointer == sample.pointer
    assert issue.evidence["nodes"] == [sample.pointer]


def test_break_is_reported_with_what_came_before(tmp_path: Path) -> None:
    report = scan_savedmodel(_write(tmp_path, sm.truncated_after_pyfunc()))
    assert {(i.rule_id, i.severity) for i in report.issues} == {
        ("MLA107", Severity.HIGH), ("MLA104", Severity.HIGH)
    }


def test_every_prefix_is_unscannable_exactly_when_protobuf_rejects_it(tmp_path: Path) -> None:
    data = sm.eager_pyfunc_in_library_function()
    parser = _saved_model_class()
    for cut in range(1, len(data)):
        report = scan_savedmodel(_write(tmp_path, data[:cut]))
        malformed = [i for i in report.issues if i.rule_id == "MLA107"]
        try:
            parser.FromString(data[:cut])
        except DecodeError:
            assert [i.severity for i in malformed] == [Severity.HIGH], cut
        else:
            assert malformed == [], cut


@pytest.mark.parametrize(
    "tail", [b"\x0b", b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x00\x00"],
    ids=["group", "overlong-varint", "field-zero"],
)
def test_wire_format_breaks_are_unscannable(tmp_path: Path, tail: bytes) -> None:
    report = scan_savedmodel(_write(tmp_path, sm.benign_savedmodel() + tail))
    assert [(i.rule_id, i.severity) for i in report.issues] == [("MLA107", Severity.HIGH)]


def test_asset_outside_the_folder_is_critical(tmp_path: Path) -> None:
    [issue] = scan_savedmodel(_write(tmp_path, sm.asset_outside_folder())).issues
    assert (issue.rule_id, issue.severity) == ("MLA103", Severity.CRITICAL)


# --- sniffing -----------------------------------------------------------------------------


@pytest.mark.parametrize("build", _SAMPLES[:-1], ids=lambda b: b.__name__)
def test_samples_sniff_as_savedmodel(tmp_path: Path, build: Callable[[], bytes]) -> None:
    assert sniff_model_format(_write(tmp_path, build(), "model.bin")) is ModelFormat.SAVEDMODEL


def test_unknown_field_is_no_savedmodel_by_content(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown model format"):
        sniff_model_format(_write(tmp_path, sm.unknown_top_level_field(), "model.bin"))


def _onnx_models() -> list[onnx.ModelProto]:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    relu = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    bare = onnx.ModelProto(ir_version=8, graph=relu)
    return [helper.make_model(relu), bare, helper.make_model(relu, producer_name="tf2onnx")]


@pytest.mark.parametrize("index", range(3))
def test_onnx_is_not_a_savedmodel(tmp_path: Path, index: int) -> None:
    data = _onnx_models()[index].SerializeToString()
    assert sniff_model_format(_write(tmp_path, data, "saved_model.pb")) is ModelFormat.ONNX


def test_other_protobufs_are_not_savedmodels(tmp_path: Path) -> None:
    # A fingerprint.pb (varint fields only) and a meta graph without its graph.
    for data in (
        sm.varint_field(1, 123) + sm.varint_field(2, 456),
        sm.saved_model(sm.length_field(sm.META_INFO_DEF, b"")),
    ):
        with pytest.raises(InputError):
            sniff_model_format(_write(tmp_path, data, "model.bin"))


# --- the command line and folders ---------------------------------------------------------


def _high(report: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (f["rule_id"], f["evidence"].get("member"))
        for r in report["results"] for f in r["findings"] if f["severity"] in ("high", "critical")
    ]


def test_pyfunc_file_fails_the_scan(run_cli: Runner, tmp_path: Path) -> None:
    result = run_cli("scan", _write(tmp_path, sm.pyfunc_graph_node()), "--select", "MLA1")
    assert result.exit_code == 1
    assert _high(result.report) == [("MLA104", None)]


def test_savedmodel_is_scanned_not_run(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    model = _write(tmp_path, sm.benign_savedmodel())
    result = run_cli("scan", model, "--data", workspace.holdout, "--target", TARGET)
    assert result.report["subject"]["model"]["format"] == "tf-savedmodel"
    assert "scanned but not run" in result.result("MLA702")["reason"]
    assert _high(result.report) == []


def _savedmodel_folder(root: Path, proto: bytes) -> Path:
    (root / "variables").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "saved_model.pb").write_bytes(proto)
    (root / "fingerprint.pb").write_bytes(sm.varint_field(1, 123) + sm.varint_field(2, 456))
    (root / "variables" / "variables.index").write_bytes(b"\x00\x01tensor bundle index\x00")
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(bytes(range(64)))
    (root / "assets" / "vocab.txt").write_text("the\nof\nand\n")
    return root


@pytest.mark.parametrize(
    ("proto", "expected"),
    [
        (sm.benign_savedmodel(), []),
        (sm.pyfunc_graph_node(), [("MLA104", "saved_model.pb")]),
        # TensorFlow reads saved_model.pb by name: content that does not sniff is walked too.
        (sm.unknown_top_level_field(), [("MLA104", "saved_model.pb")]),
        (b"not a protobuf\x00", [("MLA107", "saved_model.pb")]),
    ],
    ids=["benign", "pyfunc", "unknown-field", "not-protobuf"],
)
def test_savedmodel_folder(
    run_cli: Runner, tmp_path: Path, proto: bytes, expected: list[tuple[str, str]]
) -> None:
    folder = _savedmodel_folder(tmp_path / "model", proto)
    result = run_cli("scan", folder, "--select", "MLA1")
    assert _high(result.report) == expected
    assert result.exit_code == (1 if expected else 0)
