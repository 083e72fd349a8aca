"""Tests of the ONNX scanner (mlaudit.scanners.onnx_format).

* a hostile corpus (tests/fixtures/hostile_formats.py): external data that escapes the
  model's folder (``..``, absolute, symlink, in a Constant inside a subgraph) and custom
  operator domains (top level, two subgraphs down) are flagged; the path samples are live:
  a reader that joins the location onto the folder lands outside it;
* real models (skl2onnx conversions, external data beside the model, a model-local function)
  have no issues and run in ONNX Runtime;
* every other rule on its own, and hypothesis: random or mutated bytes never raise.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mlaudit.core.findings import Severity
from mlaudit.scanners import onnx_format
from mlaudit.scanners.format_report import MAX_ISSUES_PER_RULE, FormatReport
from mlaudit.scanners.onnx_format import STANDARD_DOMAINS, scan_onnx
from tests.fixtures.benign_formats import BenignFormatSample, build_benign_formats
from tests.fixtures.hostile_formats import (
    HOSTILE_FORMAT_NAMES,
    HostileFormatSample,
    build_hostile_formats,
    external_tensor,
    naive_target,
)
from tests.fixtures.mutation import EDITS, mutate

HOSTILE = [name for name in HOSTILE_FORMAT_NAMES if name.startswith("onnx")]
BENIGN = ["onnx_logistic_regression", "onnx_random_forest", "onnx_column_transformer",
          "onnx_external_data", "onnx_local_function"]


def _keys(report: FormatReport) -> set[str]:
    return {issue.key for issue in report.issues}


def _model(nodes: list[onnx.NodeProto], initializers: list[TensorProto] | None = None,
           **kwargs: object) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4])],
        initializer=initializers or [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], **kwargs)


def _scan_model(path: Path, model: onnx.ModelProto) -> FormatReport:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return scan_onnx(path)


# ============================================================================================
# Hostile corpus


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, HostileFormatSample]:
    directory = tmp_path_factory.mktemp("hostile-onnx")
    samples = build_hostile_formats(directory, directory / "canary", HOSTILE)
    return {sample.name: sample for sample in samples}


def test_corpus_shape(hostile: dict[str, HostileFormatSample]) -> None:
    assert len(hostile) >= 6
    assert {sample.rule_id for sample in hostile.values()} == {"MLA103", "MLA104"}
    for sample in hostile.values():
        assert sample.path.is_file()
        onnx.load(str(sample.path), load_external_data=False)  # each one is a valid ModelProto


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_sample_is_flagged(name: str, hostile: dict[str, HostileFormatSample]) -> None:
    sample = hostile[name]
    report = scan_onnx(sample.path)
    matches = [issue for issue in report.issues if issue.key.startswith(sample.key_prefix)]
    assert matches, f"{name}: no {sample.key_prefix}; issues were {_keys(report)}"
    for issue in matches:
        assert issue.rule_id == sample.rule_id
        assert issue.severity >= sample.min_severity
        assert issue.pointer
    assert report.format_detail.startswith("onnx (")


@pytest.mark.parametrize("name", [n for n in HOSTILE if "external" in n])
def test_path_samples_are_live(name: str, hostile: dict[str, HostileFormatSample]) -> None:
    """A reader that joins the location onto the model's folder leaves the folder."""
    sample = hostile[name]
    assert sample.escaping_name is not None
    folder = Path(os.path.realpath(sample.path.parent))
    target = naive_target(sample.path, sample.escaping_name)
    assert folder not in target.parents


def test_symlink_sample_points_at_a_real_file(hostile: dict[str, HostileFormatSample]) -> None:
    sample = hostile["onnx_external_symlink"]
    link = sample.path.parent / "onnx_external_symlink.weights.bin"
    assert link.is_symlink()
    assert naive_target(sample.path, link.name).is_file()
    [issue] = scan_onnx(sample.path).issues
    assert "symbolic link" in issue.message


def test_subgraph_pointers_name_the_path_down(hostile: dict[str, HostileFormatSample]) -> None:
    [issue] = scan_onnx(hostile["onnx_custom_domain_in_subgraph"].path).issues
    assert issue.pointer is not None
    assert "node 'loop' (Loop) attribute 'body'" in issue.pointer
    assert "node 'hidden_exec' (Exec)" in issue.pointer
    assert issue.evidence["op_types"] == ["Exec"]
    assert issue.evidence["domain"] == "org.example.custom"


# ============================================================================================
# Real models


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> list[BenignFormatSample]:
    return build_benign_formats(tmp_path_factory.mktemp("benign-onnx"), BENIGN)


def test_benign_models_have_no_issues(benign: list[BenignFormatSample]) -> None:
    assert len(benign) == len(BENIGN)
    for sample in benign:
        report = scan_onnx(sample.path)
        assert report.issues == (), (sample.name, report.issues)


def test_benign_models_are_real(benign: list[BenignFormatSample]) -> None:
    import onnxruntime

    for sample in benign:
        session = onnxruntime.InferenceSession(str(sample.path),
                                               providers=["CPUExecutionProvider"])
        feeds = {}
        for spec in session.get_inputs():
            if spec.type == "tensor(string)":
                feeds[spec.name] = np.array([["paris"], ["nice"]], dtype=object)
            else:
                width = spec.shape[1] if isinstance(spec.shape[1], int) else 4
                feeds[spec.name] = np.ones((2, width), dtype=np.float32)
        outputs = session.run(None, feeds)
        assert len(outputs[0]) == 2, sample.name


def test_external_data_sample_really_uses_external_data(
    benign: list[BenignFormatSample],
) -> None:
    [sample] = [s for s in benign if s.name == "onnx_external_data"]
    model = onnx.load(str(sample.path), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)
    assert (sample.path.parent / f"{sample.path.name}.data").is_file()


# ============================================================================================
# Rules one by one


def test_missing_external_file_is_medium(tmp_path: Path) -> None:
    model = _model([helper.make_node("MatMul", ["X", "W"], ["Y"])],
                   [external_tensor("W", "weights.bin")])
    [issue] = _scan_model(tmp_path / "m.onnx", model).issues
    assert (issue.rule_id, issue.severity) == ("MLA107", Severity.MEDIUM)
    assert issue.key == "onnx-external-missing:weights.bin"
    assert "does not exist" in issue.message


def test_short_external_file_and_directory_are_medium(tmp_path: Path) -> None:
    (tmp_path / "short.bin").write_bytes(bytes(10))  # the tensor needs 64 bytes
    (tmp_path / "folder.bin").mkdir()
    model = _model([], [external_tensor("A", "short.bin"), external_tensor("B", "folder.bin")])
    report = _scan_model(tmp_path / "m.onnx", model)
    assert {(i.key, i.severity) for i in report.issues} == {
        ("onnx-external-missing:short.bin", Severity.MEDIUM),
        ("onnx-external-missing:folder.bin", Severity.MEDIUM),
    }


def test_valid_external_file_in_a_subfolder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "w.bin").write_bytes(bytes(64))
    model = _model([], [external_tensor("W", "data/w.bin")])
    assert _scan_model(tmp_path / "m.onnx", model).issues == ()


@pytest.mark.parametrize(("location", "reason"), [
    ("../w.bin", "'..'"),
    ("data/../../w.bin", "'..'"),
    ("..\\w.bin", "'..'"),
    ("/tmp/w.bin", "absolute"),
    ("C:\\Windows\\win.ini", "absolute"),
    ("\\\\server\\share\\w.bin", "absolute"),
    ("w\x00.bin", "NUL"),
])
def test_escaping_locations_are_critical(tmp_path: Path, location: str, reason: str) -> None:
    model = _model([], [external_tensor("W", location)])
    [issue] = _scan_model(tmp_path / "m.onnx", model).issues
    assert (issue.rule_id, issue.severity) == ("MLA103", Severity.CRITICAL)
    assert issue.key == f"onnx-external-escape:{location}"
    assert reason in issue.message


def test_shared_bad_location_is_one_issue(tmp_path: Path) -> None:
    tensors = [external_tensor(f"W{i}", "/etc/passwd") for i in range(30)]
    report = _scan_model(tmp_path / "m.onnx", _model([], tensors))
    assert _keys(report) == {"onnx-external-escape:/etc/passwd"}


def test_external_without_location_or_with_bad_offset_is_high(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(bytes(64))
    nameless = numpy_helper.from_array(np.ones(4, np.float32), "nameless")
    nameless.ClearField("raw_data")
    nameless.data_location = TensorProto.EXTERNAL
    odd = external_tensor("odd", "w.bin")
    for entry in odd.external_data:
        if entry.key == "offset":
            entry.value = "-5"
    report = _scan_model(tmp_path / "m.onnx", _model([], [nameless, odd]))
    assert {(i.key, i.severity) for i in report.issues} == {
        ("onnx-external-no-location:nameless", Severity.HIGH),
        ("onnx-external-bad-offset:odd", Severity.HIGH),
    }


def test_every_place_a_tensor_can_hide_is_walked(tmp_path: Path) -> None:
    sparse = helper.make_sparse_tensor(external_tensor("values", "../sparse-values.bin"),
                                       numpy_helper.from_array(np.arange(4, dtype=np.int64),
                                                               "indices"), [16])
    listed = helper.make_attribute("tensors", [external_tensor("listed", "../listed.bin")])
    custom_attribute_node = helper.make_node("Identity", ["X"], ["Y"], name="carrier")
    custom_attribute_node.attribute.append(listed)
    function = helper.make_function(
        "local", "F", ["x"], ["y"],
        [helper.make_node("Constant", [], ["y"],
                          value=external_tensor("in_function", "../function.bin"))],
        [helper.make_opsetid("", 17)],
    )
    model = _model([custom_attribute_node], functions=[function])
    model.graph.sparse_initializer.append(sparse)
    training = model.training_info.add()
    training.initialization.CopyFrom(helper.make_graph(
        [], "init", [], [], initializer=[external_tensor("trained", "../training.bin")]))
    report = _scan_model(tmp_path / "m.onnx", model)
    assert _keys(report) == {
        "onnx-external-escape:../sparse-values.bin", "onnx-external-escape:../listed.bin",
        "onnx-external-escape:../function.bin", "onnx-external-escape:../training.bin",
    }


def test_standard_domains_are_not_reported(tmp_path: Path) -> None:
    nodes = [helper.make_node("Identity", ["X"], [f"o{i}"], domain=domain)
             for i, domain in enumerate(sorted(STANDARD_DOMAINS))]
    assert _scan_model(tmp_path / "m.onnx", _model(nodes)).issues == ()


@pytest.mark.parametrize("domain", ["com.microsoft.nchwc", "ai.onnx.contrib", "AI.ONNX",
                                    "org.pytorch.aten", " "])
def test_other_domains_are_reported(tmp_path: Path, domain: str) -> None:
    [issue] = _scan_model(tmp_path / "m.onnx",
                          _model([helper.make_node("Op", ["X"], ["Y"], domain=domain)])).issues
    assert (issue.rule_id, issue.severity) == ("MLA104", Severity.HIGH)
    assert issue.key == f"onnx-custom-domain:{domain}"


def test_local_functions_cover_only_their_own_op_types(tmp_path: Path) -> None:
    function = helper.make_function("mine", "Defined", ["x"], ["y"],
                                    [helper.make_node("Relu", ["x"], ["y"])],
                                    [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("Defined", ["X"], ["a"], domain="mine"),
             helper.make_node("Undefined", ["a"], ["b"], domain="mine"),
             helper.make_node("Undefined", ["b"], ["Y"], domain="mine")]
    [issue] = _scan_model(tmp_path / "m.onnx", _model(nodes, functions=[function])).issues
    assert issue.key == "onnx-custom-domain:mine"
    assert issue.evidence["op_types"] == ["Undefined"]
    assert issue.evidence["nodes"] == 2


def test_custom_op_inside_a_local_function_is_reported(tmp_path: Path) -> None:
    function = helper.make_function("mine", "Wrapper", ["x"], ["y"],
                                    [helper.make_node("Shell", ["x"], ["y"], domain="evil")],
                                    [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("Wrapper", ["X"], ["Y"], domain="mine")]
    report = _scan_model(tmp_path / "m.onnx", _model(nodes, functions=[function]))
    assert _keys(report) == {"onnx-custom-domain:evil"}
    assert report.issues[0].pointer == "function mine:Wrapper > node 'y' (Shell)"


def test_graph_depth_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_format, "MAX_GRAPH_DEPTH", 2)
    inner = helper.make_graph([helper.make_node("Deep", ["X"], ["Y"], domain="evil")], "g0",
                              [], [])
    for level in range(1, 5):
        node = helper.make_node("If", ["c"], ["Y"], then_branch=inner, else_branch=inner)
        inner = helper.make_graph([node], f"g{level}", [], [])
    report = _scan_model(tmp_path / "m.onnx", _model(list(inner.node)))
    assert "onnx:too-deep" in _keys(report)


def test_issue_count_is_capped(tmp_path: Path) -> None:
    nodes = [helper.make_node("Op", ["X"], [f"o{i}"], domain=f"d{i}") for i in range(250)]
    report = _scan_model(tmp_path / "m.onnx", _model(nodes))
    assert len(report.issues) == MAX_ISSUES_PER_RULE + 1
    assert report.issues[-1].key == "mla104:more-issues"
    assert report.issues[-1].evidence["not_listed"] == 50


# ============================================================================================
# Malformed files


@pytest.mark.parametrize(("data", "key"), [
    (b"\x08\x07\x12\xff\xff\xff\xff\x0f", "onnx:unparseable"),
    (b"\xff" * 64, "onnx:unparseable"),
    (b"", "onnx:no-graph"),
    (b"\x08\x07", "onnx:no-graph"),  # ir_version 7 and nothing else
], ids=["truncated", "garbage", "empty", "no-graph"])
def test_malformed_model(tmp_path: Path, data: bytes, key: str) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    report = scan_onnx(path)
    assert key in _keys(report)
    assert all(i.rule_id == "MLA107" and i.severity is Severity.HIGH for i in report.issues)


def test_the_file_name_never_picks_the_parser(tmp_path: Path,
                                              benign: list[BenignFormatSample]) -> None:
    for suffix in (".json", ".txt", ".onnxtxt", ".textproto"):
        path = tmp_path / f"model{suffix}"
        path.write_bytes(benign[0].path.read_bytes())
        assert scan_onnx(path).issues == ()


def test_missing_onnx_package_is_an_import_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install"):
        scan_onnx(tmp_path / "m.onnx")


def test_absent_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_onnx(tmp_path / "absent.onnx")


# ============================================================================================
# Properties


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-fuzz") / "fuzz.onnx"


def _scan_never_raises(path: Path, data: bytes) -> FormatReport:
    path.write_bytes(data)
    start = time.perf_counter()
    report = scan_onnx(path)
    assert time.perf_counter() - start < 2.0
    assert isinstance(report, FormatReport)
    for issue in report.issues:
        assert issue.rule_id in {"MLA103", "MLA104", "MLA107"}
    return report


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_bytes(scratch: Path, data: bytes) -> None:
    _scan_never_raises(scratch, data)


@pytest.fixture(scope="module")
def seeds(benign: list[BenignFormatSample]) -> list[bytes]:
    return [sample.path.read_bytes() for sample in benign]


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, len(BENIGN) - 1), edits=EDITS)
def test_mutated_models(scratch: Path, seeds: list[bytes], seed: int,
                        edits: list[tuple[str, int, bytes]]) -> None:
    data = mutate(seeds[seed], edits)
    _scan_never_raises(scratch, data)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(location=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30))
def test_random_locations(scratch: Path, location: str) -> None:
    model = _model([], [external_tensor("W", location)])
    report = _scan_never_raises(scratch, model.SerializeToString())
    [issue] = report.issues  # a location is either escaping or missing, never fine here
    parts = location.replace("\\", "/").split("/")
    if ".." in parts or location.startswith(("/", "\\")) or "\x00" in location:
        assert issue.rule_id == "MLA103"
        assert issue.severity is Severity.CRITICAL
