"""The boosting libraries' own formats, sniffed by content and checked without the libraries."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from pathlib import Path

import pytest

from mlaudit.core.errors import InputError
from mlaudit.core.findings import Severity
from mlaudit.scanners.inventory import take_inventory
from mlaudit.scanners.sniff import ModelFormat, sniff_model_format
from mlaudit.scanners.tree_formats import decode_ubjson
from tests.fixtures.tree_models import build_tree_models

NATIVE = {
    "model.json": ModelFormat.XGBOOST_JSON,
    "model.ubj": ModelFormat.XGBOOST_UBJ,
    "model.txt": ModelFormat.LIGHTGBM_TEXT,
    "model.cbm": ModelFormat.CATBOOST,
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree_models(tmp_path_factory.mktemp("tree-models"))


def _issues(path: Path) -> list[str]:
    inventory = take_inventory(path, sniff_model_format(path))
    assert all(i.rule_id == "MLA107" and i.severity is Severity.HIGH for i in inventory.issues)
    return [i.key for i in inventory.issues]


@pytest.mark.parametrize(("name", "expected"), NATIVE.items())
def test_saved_models_are_sniffed_by_content_and_clean(
    models: Path, tmp_path: Path, name: str, expected: ModelFormat
) -> None:
    # The name says nothing: the same bytes under another name are the same format.
    renamed = tmp_path / "model.bin"
    shutil.copy(models / name, renamed)
    assert sniff_model_format(renamed) is expected
    inventory = take_inventory(renamed, expected)
    assert inventory.issues == ()
    assert inventory.names == ()
    assert "20 trees" in inventory.format_detail or expected is ModelFormat.CATBOOST


@pytest.mark.parametrize("name", NATIVE)
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.98])
def test_truncated_models_are_malformed(
    models: Path, tmp_path: Path, name: str, keep: float
) -> None:
    data = (models / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * keep)])
    assert _issues(cut), f"{name} cut at {keep:.0%} passed"


def test_xgboost_tree_that_points_back_into_itself(models: Path, tmp_path: Path) -> None:
    document = json.loads((models / "model.json").read_text())
    tree = document["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["left_children"][1] = 1  # a node that is its own child
    edited = tmp_path / "cycle.json"
    edited.write_text(json.dumps(document))
    assert _issues(edited) == ["xgboost:child-range"] or _issues(edited) == ["xgboost:cycle"]


def test_xgboost_tree_count_that_lies(models: Path, tmp_path: Path) -> None:
    document = json.loads((models / "model.json").read_text())
    document["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"] = "21"
    edited = tmp_path / "count.json"
    edited.write_text(json.dumps(document, indent=2))  # pretty-printed is still XGBoost JSON
    assert sniff_model_format(edited) is ModelFormat.XGBOOST_JSON
    assert _issues(edited) == ["xgboost:tree-count"]


def test_lightgbm_tree_sizes_that_lie(models: Path, tmp_path: Path) -> None:
    text = (models / "model.txt").read_text()
    edited = tmp_path / "sizes.txt"
    edited.write_text(text.replace("tree_sizes=", "tree_sizes=1", 1))
    assert _issues(edited) == ["lightgbm:tree-sizes"]


def test_catboost_bytes_after_the_core(models: Path, tmp_path: Path) -> None:
    edited = tmp_path / "trailing.cbm"
    edited.write_bytes((models / "model.cbm").read_bytes() + b"payload")
    assert _issues(edited) == ["catboost:trailing-bytes"]


def test_ubjson_counts_cannot_outrun_the_data() -> None:
    assert decode_ubjson(b"{i\x01a[$i#i\x02\x01\x02}") == {"a": [1, 2]}
    for hostile in (b"[$d#L\x7f\xff\xff\xff\xff\xff\xff\xff", b"[#l\x7f\xff\xff\xff", b"[" * 100):
        with pytest.raises(Exception, match=r"nested|ends|claims"):
            decode_ubjson(hostile)


def test_other_json_is_not_a_tree_model(tmp_path: Path) -> None:
    other = tmp_path / "model.json"
    other.write_text('{"weights": [1, 2, 3]}')
    with pytest.raises(InputError, match="unknown model format"):
        sniff_model_format(other)



@pytest.mark.parametrize("name", NATIVE)
def test_a_pickle_appended_to_a_native_model_is_refused(
    models: Path, tmp_path: Path, name: str
) -> None:
    """A polyglot attempt: the model the library reads, then a payload some other reader
    might reach. Whatever follows the model's own end is a finding, never "clean"."""
    payload = b"\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x8c\x06system\x93."
    edited = tmp_path / name
    edited.write_bytes((models / name).read_bytes() + b"\n" + payload)
    assert _issues(edited), f"{name} with a pickle after it passed"


def test_a_tokenizer_json_is_not_an_xgboost_model(tmp_path: Path) -> None:
    """Regression: every Hugging Face folder's tokenizer.json opens with a string "version"
    and was taken for a malformed XGBoost model, blocking the folder."""
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text('{"version": "1.0", "truncation": null, "model": {"type": "WordPiece"}}')
    with pytest.raises(InputError, match="unknown model format"):
        sniff_model_format(tokenizer)

@pytest.mark.parametrize("name", NATIVE)
def test_mutated_models_never_break_the_scanner(models: Path, tmp_path: Path, name: str) -> None:
    """Random cuts and byte flips: an issue or an unknown format, never an exception."""
    data = (models / name).read_bytes()
    rng = random.Random(name)
    mutated = tmp_path / "mutated"
    for trial in range(60):
        blob = bytearray(data[: rng.randrange(1, len(data))] if trial % 2 else data)
        for _ in range(rng.randrange(1, 4)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        mutated.write_bytes(bytes(blob))
        with contextlib.suppress(InputError):  # exit 2: the file is no model mlaudit knows
            take_inventory(mutated, sniff_model_format(mutated))
