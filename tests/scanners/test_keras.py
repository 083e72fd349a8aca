"""Tests of the Keras scanner (mlaudit.scanners.keras).

* a live hostile corpus (tests/fixtures/hostile_formats.py): Lambda bytecode (top level,
  nested in a Functional inside a Sequential, in a legacy HDF5 file), custom modules, Keras's
  own unsafe-mode switch, a TFOpLambda writing files, zip path traversal. Keras is not
  installed, so liveness is proven the way Keras's ``func_load`` would run the code: decode,
  unmarshal and call it, in a child process, which must create the canary;
* benign Keras 3 zips and tf.keras 2 HDF5 files built with the layouts Keras writes: no issue;
* every other rule, malformed files, and hypothesis: random bytes, mutated archives and random
  JSON configs never raise and stay fast.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaudit.core.findings import Severity
from mlaudit.scanners import keras as keras_scanner
from mlaudit.scanners.format_report import MAX_ISSUES_PER_RULE, FormatReport
from mlaudit.scanners.keras import scan_keras_h5, scan_keras_zip
from tests.fixtures.benign_formats import BenignFormatSample, build_benign_formats
from tests.fixtures.hostile_formats import (
    HOSTILE_FORMAT_NAMES,
    HostileFormatSample,
    build_hostile_formats,
    canary_code,
    dense,
    input_layer,
    keras_object,
    lambda_layer,
    legacy_dense,
    legacy_sequential,
    naive_target,
    read_keras_config,
    sequential,
    write_keras_h5,
    write_keras_zip,
)
from tests.fixtures.mutation import EDITS, mutate

HOSTILE = [name for name in HOSTILE_FORMAT_NAMES if name.startswith("keras")]
BENIGN = ["keras_dense_zip", "keras_wrappers_zip", "keras_dense_h5", "keras_dense_h5_text"]
_CODE = canary_code(Path("/nonexistent/never-created"))


def _scan(sample_path: Path) -> FormatReport:
    if zipfile.is_zipfile(sample_path):
        return scan_keras_zip(sample_path)
    return scan_keras_h5(sample_path)


def _keys(report: FormatReport) -> set[str]:
    return {issue.key for issue in report.issues}


def _zip_with_config(path: Path, config: object) -> FormatReport:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    return scan_keras_zip(path)


# ============================================================================================
# Hostile corpus


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, HostileFormatSample],
                                                               Path]:
    directory = tmp_path_factory.mktemp("hostile-keras")
    canary = directory / "scan-canary"
    samples = build_hostile_formats(directory, canary, HOSTILE)
    return {sample.name: sample for sample in samples}, canary


def test_corpus_shape(hostile: tuple[dict[str, HostileFormatSample], Path]) -> None:
    samples, _ = hostile
    assert len(samples) >= 7
    assert {sample.scanner for sample in samples.values()} == {"keras_zip", "keras_h5"}
    assert sum(sample.code_path is not None for sample in samples.values()) >= 3


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_sample_is_flagged(
    name: str, hostile: tuple[dict[str, HostileFormatSample], Path]
) -> None:
    samples, canary = hostile
    sample = samples[name]
    report = (scan_keras_zip if sample.scanner == "keras_zip" else scan_keras_h5)(sample.path)
    matches = [issue for issue in report.issues if issue.key.startswith(sample.key_prefix)]
    assert matches, f"{name}: no {sample.key_prefix}; issues were {_keys(report)}"
    for issue in matches:
        assert issue.rule_id == sample.rule_id
        assert issue.severity >= sample.min_severity
    assert not canary.exists()  # nothing was unmarshalled or run


def test_lambda_issue_shape(hostile: tuple[dict[str, HostileFormatSample], Path]) -> None:
    samples, _ = hostile
    report = scan_keras_zip(samples["keras_lambda_zip"].path)
    [issue] = report.issues
    assert issue.rule_id == "MLA104"
    assert issue.severity is Severity.HIGH
    assert issue.key == "keras-lambda:lambda_1.function"
    assert issue.pointer == "layers[2] (name 'lambda_1')"
    assert issue.member == "config.json"
    assert len(str(issue.evidence["code_sha256"])) == 64
    strings = issue.evidence["strings"]
    assert isinstance(strings, list)
    assert "open" in strings
    assert "close" in strings
    assert report.format_detail == "keras-v3 zip (keras 3.6.0)"
    assert report.members == 3


def test_nested_lambda_pointer(hostile: tuple[dict[str, HostileFormatSample], Path]) -> None:
    samples, _ = hostile
    [issue] = scan_keras_zip(samples["keras_nested_lambda_zip"].path).issues
    assert issue.pointer == "layers[2] (name 'feature_block') > layers[1] (name 'hidden_lambda')"


def test_custom_module_os_is_high(hostile: tuple[dict[str, HostileFormatSample], Path]) -> None:
    samples, _ = hostile
    [issue] = scan_keras_zip(samples["keras_custom_module_os"].path).issues
    assert issue.severity is Severity.HIGH
    assert issue.evidence["module"] == "os"


def test_legacy_h5_lambda(hostile: tuple[dict[str, HostileFormatSample], Path]) -> None:
    samples, _ = hostile
    report = scan_keras_h5(samples["keras_h5_lambda"].path)
    [issue] = report.issues
    assert issue.pointer == "layers[2] (name 'lambda')"
    assert issue.member is None
    assert issue.evidence["format"] == "tf.keras 2 Lambda"
    assert report.format_detail == "keras-h5 (legacy HDF5, keras 2.15.0, backend tensorflow)"


# The child process used by the liveness tests: read the config from the sample file as Keras
# would, take the marshalled code from it, and do what keras.src.utils.python_utils.func_load
# and the Lambda layer's call do with it.
_RUN_LAMBDA_IN_CHILD = """
import codecs, json, marshal, sys, types, zipfile
path, steps = sys.argv[1], json.loads(sys.argv[2])
if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
else:
    import h5py
    with h5py.File(path, "r") as handle:
        raw = handle.attrs["model_config"]
    config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
value = config
for step in steps:
    value = value[step]
code = marshal.loads(codecs.decode(value.encode("ascii"), "base64"))
function = types.FunctionType(code, globals(), name=code.co_name)
function(0)
"""


# This test deliberately executes our own harmless payloads (each only creates a canary file in
# pytest's temporary directory), in a child process, to prove each sample is live.
@pytest.mark.parametrize("name", ["keras_lambda_zip", "keras_nested_lambda_zip",
                                  "keras_h5_lambda", "keras_unsafe_mode_switch",
                                  "keras_h5_lambda_without_type",
                                  "keras_zip_legacy_lambda_list"])
def test_bytecode_sample_is_live(name: str, tmp_path: Path) -> None:
    canary = tmp_path / f"{name}.canary"
    [sample] = build_hostile_formats(tmp_path / "corpus", canary, [name])
    steps: list[str | int]
    if sample.code_path is not None:
        steps = list(sample.code_path)
    else:  # the payload Lambda behind the switch
        layers = read_keras_config(sample.path)["config"]["layers"]
        index = next(i for i, layer in enumerate(layers) if layer["config"]["name"] == "payload")
        steps = ["config", "layers", index, "config", "function", "config", "code"]
    assert not canary.exists()
    result = subprocess.run(
        [sys.executable, "-c", _RUN_LAMBDA_IN_CHILD, str(sample.path), json.dumps(steps)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert canary.exists(), (
        f"{name} did not create its canary, so it no longer tests anything; "
        f"exit {result.returncode}\n{result.stderr[-2000:]}"
    )


def test_traversal_sample_is_live(hostile: tuple[dict[str, HostileFormatSample], Path]) -> None:
    samples, _ = hostile
    sample = samples["keras_zip_traversal"]
    assert sample.escaping_name is not None
    with zipfile.ZipFile(sample.path) as archive:
        assert sample.escaping_name in archive.namelist()
    # An extractor that joins member names onto its target folder writes outside it.
    target = naive_target(sample.path, sample.escaping_name)
    assert sample.path.parent.resolve() not in target.parents


# ============================================================================================
# Benign files


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> list[BenignFormatSample]:
    return build_benign_formats(tmp_path_factory.mktemp("benign-keras"), BENIGN)


def test_benign_files_have_no_issues(benign: list[BenignFormatSample]) -> None:
    assert len(benign) == len(BENIGN)
    for sample in benign:
        report = _scan(sample.path)
        assert report.issues == (), (sample.name, report.issues)
        assert report.format_detail.startswith("keras-")


# ============================================================================================
# Rules one by one


@pytest.mark.parametrize(("obj", "key", "severity"), [
    (keras_object("mypackage.layers", "Attention", {"name": "attn"}),
     "keras-module:attn=mypackage.layers", Severity.MEDIUM),
    (keras_object("builtins", "function", "exec"),
     "keras-module:layers[2]=builtins", Severity.HIGH),
    (keras_object("subprocess", "Popen", {"name": "p"}), "keras-module:p=subprocess",
     Severity.HIGH),
    (keras_object("keras_evil", "Dense", {"name": "fake"}), "keras-module:fake=keras_evil",
     Severity.MEDIUM),
    (keras_object("keras.layers", "Lambda", {"name": "named", "function": keras_object(
        "keras.utils", "function", "get_file")}),
     "keras-function:named.function", Severity.HIGH),
    ({"class_name": "TFOpLambda", "config": {"name": "tf.math.add", "function": "math.add"}},
     "keras-tf-op:tf.math.add", Severity.MEDIUM),
    ({"class_name": "SlicingOpLambda",
      "config": {"name": "slice", "function": "__operators__.getitem"}},
     "keras-tf-op:slice", Severity.MEDIUM),
    ({"class_name": "TFOpLambda", "config": {"name": "lib", "function": "load_library"}},
     "keras-tf-op:lib", Severity.HIGH),
], ids=["package", "builtins-exec", "subprocess", "lookalike", "get-file", "tf-op", "slicing",
        "tf-load-library"])
def test_code_rules(tmp_path: Path, obj: dict[str, Any], key: str, severity: Severity) -> None:
    config = sequential([input_layer(4), dense("dense", 4, 4), obj])
    report = _zip_with_config(tmp_path / "m.keras", config)
    matches = [issue for issue in report.issues if issue.key == key]
    assert matches, _keys(report)
    assert matches[0].rule_id == "MLA104"
    assert matches[0].severity is severity


def test_keras_packages_are_not_reported(tmp_path: Path) -> None:
    objects = [keras_object(module, "Thing", {"name": f"t{i}"}) for i, module in enumerate(
        ["keras", "keras.layers", "keras.src.layers.core.dense", "tf_keras.layers",
         "keras_hub.src.models.bert"])]
    config = sequential([input_layer(4), *objects])
    config["config"]["shared_object_id"] = 1234  # object sharing carries no code
    assert _zip_with_config(tmp_path / "m.keras", config).issues == ()


def test_lambda_anywhere_in_the_config_is_reported(tmp_path: Path) -> None:
    generic = {"class_name": "__lambda__", "config": {"value": [_CODE, None, None]}}
    config = sequential([input_layer(4), dense("dense", 4, 4)])
    config["compile_config"]["loss"] = generic
    config["config"]["layers"][1]["config"]["activation"] = generic
    report = _zip_with_config(tmp_path / "m.keras", config)
    assert {(i.key, i.pointer) for i in report.issues} == {
        ("keras-lambda:model.compile_config.loss", "compile_config.loss"),
        ("keras-lambda:dense.activation", "layers[1] (name 'dense') > activation"),
    }
    assert all(issue.severity is Severity.HIGH for issue in report.issues)


def test_wrapped_layers_are_walked(tmp_path: Path) -> None:
    wrapper = keras_object("keras.layers", "Bidirectional", {
        "name": "bi", "layer": keras_object("mypkg", "Cell", {"name": "forward"}),
        "backward_layer": lambda_layer("backward", _CODE, 4),
    })
    timed = keras_object("keras.layers", "TimeDistributed", {
        "name": "td", "layer": lambda_layer("inner", _CODE, 4)})
    report = _zip_with_config(tmp_path / "m.keras",
                              sequential([input_layer(4), wrapper, timed]))
    assert {(i.key, i.pointer) for i in report.issues} == {
        ("keras-module:bi/forward=mypkg", "layers[1] (name 'bi') > layer (name 'forward')"),
        ("keras-lambda:bi/backward.function",
         "layers[1] (name 'bi') > backward_layer (name 'backward')"),
        ("keras-lambda:td/inner.function", "layers[2] (name 'td') > layer (name 'inner')"),
    }


def test_legacy_lambda_variants(tmp_path: Path) -> None:
    named = {"class_name": "Lambda", "config": {
        "name": "named", "function": "my_function", "function_type": "function",
        "module": "my_project.ops", "output_shape": [_CODE, None, None],
        "output_shape_type": "lambda"}}
    path = tmp_path / "m.h5"
    write_keras_h5(path, legacy_sequential([legacy_dense("dense", 4), named]))
    report = scan_keras_h5(path)
    assert {(i.key, i.severity) for i in report.issues} == {
        ("keras-lambda-function:named", Severity.MEDIUM),
        ("keras-lambda:named.output_shape", Severity.HIGH),
    }


@pytest.mark.parametrize(("fields", "severity"), [
    ({"function": _CODE}, Severity.HIGH),
    ({"function": [_CODE, None, None]}, Severity.HIGH),
    ({"function": _CODE, "function_type": "Lambda"}, Severity.HIGH),
    ({"function": "mine", "function_type": "function"}, Severity.MEDIUM),
    ({"function": None, "output_shape": _CODE}, Severity.HIGH),
    ({"function": None, "output_shape": [4], "output_shape_type": "raw"}, None),
    ({"function": "name", "function_type": "raw"}, None),
], ids=["string-no-type", "list-no-type", "unknown-type", "named", "shape-no-type",
        "raw-shape", "raw-function"])
def test_lambda_without_function_type(tmp_path: Path, fields: dict[str, Any],
                                      severity: Severity | None) -> None:
    """Older Keras unmarshals a Lambda's string or list whatever its type says, or without one."""
    layer = {"class_name": "Lambda", "config": {"name": "old", **fields}}
    path = tmp_path / "m.h5"
    write_keras_h5(path, legacy_sequential([legacy_dense("dense", 4), layer]))
    issues = scan_keras_h5(path).issues
    assert [issue.severity for issue in issues] == ([severity] if severity else [])


def test_training_config_is_walked(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    write_keras_h5(path, legacy_sequential([legacy_dense("dense", 4)]))
    with h5py.File(path, "a") as handle:
        handle.attrs["training_config"] = json.dumps(
            {"loss": {"class_name": "Custom", "module": "evil_losses", "config": {}}}).encode()
    [issue] = scan_keras_h5(path).issues
    assert issue.key == "keras-module:model.training_config.loss=evil_losses"


def test_weights_only_h5_has_no_issues(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("dense/kernel:0", data=np.ones((4, 4)))
    report = scan_keras_h5(path)
    assert report.issues == ()
    assert "weights only" in report.format_detail


def test_hdf5_links_to_other_files(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "sibling.h5").write_bytes(b"")
    path = model / "m.h5"
    write_keras_h5(path, legacy_sequential([legacy_dense("dense", 4)]))
    with h5py.File(path, "a") as handle:
        handle["escape"] = h5py.ExternalLink("/etc/passwd", "/")
        handle["climb"] = h5py.ExternalLink("../secret.h5", "/data")
        handle["sibling"] = h5py.ExternalLink("sibling.h5", "/data")
        handle.create_dataset("stored", shape=(4,), dtype="f4",
                              external=[("../raw.bin", 0, 16)])
    report = scan_keras_h5(path)
    assert {(i.key, i.severity) for i in report.issues} == {
        ("keras-h5:external-escape:/escape", Severity.CRITICAL),
        ("keras-h5:external-escape:/climb", Severity.CRITICAL),
        ("keras-h5:external-file:/sibling", Severity.MEDIUM),
        ("keras-h5:external-escape:/stored", Severity.CRITICAL),
    }
    assert all(i.rule_id == "MLA103" for i in report.issues)


def test_weights_inside_the_zip_are_checked_for_links(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle["layers/dense/vars/0"] = h5py.ExternalLink("/etc/passwd", "/")
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(sequential([input_layer(4)])))
        archive.writestr("model.weights.h5", buffer.getvalue())
    [issue] = scan_keras_zip(path).issues
    assert (issue.rule_id, issue.severity, issue.member) == ("MLA103", Severity.CRITICAL,
                                                             "model.weights.h5")


@pytest.mark.parametrize("name", ["/etc/cron.d/job", "..\\..\\x.bat", "a/../../b",
                                  "C:\\Windows\\x.dll"])
def test_member_paths(tmp_path: Path, name: str) -> None:
    path = tmp_path / "m.keras"
    write_keras_zip(path, sequential([input_layer(4)]), extra_members=[(name, b"x")])
    [issue] = scan_keras_zip(path).issues
    assert (issue.rule_id, issue.severity, issue.member) == ("MLA103", Severity.CRITICAL, name)


def test_duplicate_config_members_are_all_scanned(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(sequential([input_layer(4)])))
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("config.json", json.dumps(
                sequential([input_layer(4), lambda_layer("second", _CODE, 4)])))
    report = scan_keras_zip(path)
    assert _keys(report) == {"keras-zip:duplicate-member:config.json",
                             "keras-lambda:second.function"}


# ============================================================================================
# Malformed files


@pytest.mark.parametrize(("content", "key"), [
    ("{not json", "keras-json:invalid:config.json"),
    ("[1, 2]", "keras-json:not-object:config.json"),
    ("[" * 100_000 + "]" * 100_000, "keras-json:invalid:config.json"),  # RecursionError
], ids=["invalid", "array", "deep"])
def test_malformed_config(tmp_path: Path, content: str, key: str) -> None:
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", content)
    report = scan_keras_zip(path)
    assert _keys(report) == {key}
    assert report.issues[0].severity is Severity.HIGH


def test_missing_config_and_non_zip(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    assert _keys(scan_keras_zip(path)) == {"keras-zip:no-config"}
    path.write_bytes(b"not a zip at all")
    assert _keys(scan_keras_zip(path)) == {"keras-zip:unreadable"}


def test_oversized_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keras_scanner, "MAX_JSON_HEADER_BYTES", 100)
    report = _zip_with_config(tmp_path / "m.keras", sequential([input_layer(4)]))
    assert _keys(report) == {"keras-zip:oversized:config.json"}


def test_depth_caps(tmp_path: Path) -> None:
    nested: dict[str, Any] = lambda_layer("bottom", _CODE, 4)
    for level in range(keras_scanner.MAX_LAYER_DEPTH + 5):
        nested = sequential([nested], name=f"level{level}")
    report = _zip_with_config(tmp_path / "m.keras", nested)
    assert "keras-config:too-deep" in _keys(report)
    deep: object = {"leaf": True}
    for _ in range(keras_scanner.MAX_CONFIG_DEPTH + 5):
        deep = {"x": [deep]}
    report = _zip_with_config(tmp_path / "d.keras", {"class_name": "Sequential", "config": deep})
    assert _keys(report) == {"keras-config:too-deep"}


def test_issue_count_is_capped(tmp_path: Path) -> None:
    layers = [keras_object("mypkg", "L", {"name": f"l{i}"}) for i in range(300)]
    report = _zip_with_config(tmp_path / "m.keras", sequential(layers))
    assert len(report.issues) == MAX_ISSUES_PER_RULE + 1
    assert report.issues[-1].key == "mla104:more-issues"


def test_large_config_is_fast(tmp_path: Path) -> None:
    layers = [dense(f"d{i}", 8, 8) for i in range(5000)]
    start = time.perf_counter()
    report = _zip_with_config(tmp_path / "m.keras", sequential(layers))
    assert report.issues == ()
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize(("value", "key"), [
    (b"{broken", "keras-json:invalid:model_config"),
    (b"\xff\xfe", "keras-json:not-utf8:model_config"),
    (np.int64(3), "keras-h5:bad-attribute:model_config"),
], ids=["invalid", "not-utf8", "integer"])
def test_malformed_h5_config(tmp_path: Path, value: object, key: str) -> None:
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = value
    assert _keys(scan_keras_h5(path)) == {key}


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    report = scan_keras_h5(path)
    assert _keys(report) == {"keras-h5:unreadable"}
    with pytest.raises(FileNotFoundError):
        scan_keras_h5(tmp_path / "absent.h5")


def test_missing_h5py_is_an_import_error(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install h5py"):
        scan_keras_h5(tmp_path / "m.h5")
    # the zip scanner still works, only the weights' link check is skipped
    report = _zip_with_config(tmp_path / "m.keras", sequential([input_layer(4)]))
    assert report.issues == ()


# ============================================================================================
# Properties


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keras-fuzz")


def _timed(scan: Any, path: Path) -> FormatReport:
    start = time.perf_counter()
    report = scan(path)
    assert time.perf_counter() - start < 2.0
    assert isinstance(report, FormatReport)
    for issue in report.issues:
        assert issue.rule_id in {"MLA103", "MLA104", "MLA107"}
    return report


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_bytes(scratch: Path, data: bytes) -> None:
    for name, scan in (("r.keras", scan_keras_zip), ("r.h5", scan_keras_h5)):
        (scratch / name).write_bytes(data)
        assert _timed(scan, scratch / name).issues  # nothing random is a valid model


@pytest.fixture(scope="module")
def seed_zip(benign: list[BenignFormatSample]) -> bytes:
    return next(s.path for s in benign if s.name == "keras_dense_zip").read_bytes()


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_mutated_archives(scratch: Path, seed_zip: bytes,
                          edits: list[tuple[str, int, bytes]]) -> None:
    data = mutate(seed_zip, edits)
    (scratch / "m.keras").write_bytes(data)
    _timed(scan_keras_zip, scratch / "m.keras")


_keys_strategy = st.sampled_from(["class_name", "config", "module", "layers", "layer",
                                  "name", "function", "function_type", "code", "value",
                                  "registered_name", "x"])
_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.sampled_from(["Lambda", "__lambda__", "TFOpLambda", "os", "keras.layers",
                              "lambda", "function", _CODE]) | st.text(max_size=5))
_json = st.recursive(_leaves, lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(_keys_strategy, children, max_size=5), max_leaves=40)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(_keys_strategy, _json, max_size=5))
def test_random_configs(scratch: Path, config: dict[str, Any]) -> None:
    path = scratch / "c.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    _timed(scan_keras_zip, path)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(_keys_strategy, _json, max_size=5) | _json)
def test_random_h5_configs(scratch: Path, config: object) -> None:
    path = scratch / "c.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config).encode()
    _timed(scan_keras_h5, path)
