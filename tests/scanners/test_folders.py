"""Model folders: MLflow and Hugging Face layouts, scanned file by file plus their metadata."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from mlaudit.core.hashing import sha256_tree
from tests.conftest import TARGET, Runner, Workspace


class _Payload:
    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.canary}",))


def _mlflow_folder(root: Path, model: object, **flavor: str) -> Path:
    root.mkdir(parents=True)
    joblib.dump(model, root / "model.pkl")
    settings = {"pickled_model": "model.pkl", "serialization_format": "cloudpickle", **flavor}
    lines = ["flavors:", "  sklearn:"] + [f"    {k}: {v}" for k, v in settings.items()]
    lines += ["  python_function:", "    loader_module: mlflow.sklearn"]
    lines += ["    model_path: model.pkl"]
    (root / "MLmodel").write_text("\n".join(lines) + "\n")
    return root


def _hf_folder(root: Path, config: dict[str, object]) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(config))
    (root / "tokenizer.json").write_text('{"version": "1.0"}')
    return root


def _fitted() -> LogisticRegression:
    return LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


def _findings(run_cli: Runner, folder: Path) -> tuple[int, list[dict[str, object]]]:
    result = run_cli("scan", folder, "--select", "MLA1")
    found = [f for r in result.report["results"] for f in r["findings"]]
    return result.exit_code, found


def test_benign_mlflow_folder_has_only_the_format_advice(run_cli: Runner, tmp_path: Path) -> None:
    folder = _mlflow_folder(tmp_path / "model", _fitted())
    code, found = _findings(run_cli, folder)
    assert code == 0
    assert {(f["rule_id"], f["severity"]) for f in found} == {("MLA105", "low")}


def test_hostile_pickle_in_mlflow_folder_is_critical_with_its_member(
    run_cli: Runner, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    folder = _mlflow_folder(tmp_path / "model", {"model": _Payload(canary)})
    code, found = _findings(run_cli, folder)
    assert code == 1
    [critical] = [f for f in found if f["severity"] == "critical"]
    assert critical["rule_id"] == "MLA101"
    assert critical["location"]["pointer"].startswith("model.pkl offset ")
    assert not canary.exists()


def test_mlflow_custom_loader_and_escaping_path(run_cli: Runner, tmp_path: Path) -> None:
    folder = _mlflow_folder(tmp_path / "model", _fitted(), data="../../elsewhere.pkl")
    text = (folder / "MLmodel").read_text().replace("mlflow.sklearn", "team_loader.custom")
    (folder / "MLmodel").write_text(text)
    code, found = _findings(run_cli, folder)
    rules = {(f["rule_id"], f["severity"]) for f in found}
    assert ("MLA104", "high") in rules
    assert ("MLA103", "critical") in rules
    assert code == 1


def test_huggingface_remote_code_is_mla106(run_cli: Runner, tmp_path: Path) -> None:
    folder = _hf_folder(
        tmp_path / "hf", {"auto_map": {"AutoModel": "modeling_evil.EvilModel"}}
    )
    (folder / "modeling_evil.py").write_text("import os\n")
    code, found = _findings(run_cli, folder)
    [remote] = [f for f in found if f["rule_id"] == "MLA106"]
    assert remote["severity"] == "high"
    assert remote["evidence"]["python_files"] == ["modeling_evil.py"]
    assert code == 1


def test_huggingface_pickle_weights_next_to_safetensors(
    run_cli: Runner, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    folder = _hf_folder(tmp_path / "hf", {"model_type": "bert"})
    (folder / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(canary)))
    code, found = _findings(run_cli, folder)
    rules = {(f["rule_id"], f["severity"]) for f in found}
    assert ("MLA105", "low") in rules
    assert ("MLA101", "critical") in rules
    assert code == 1
    assert not canary.exists()


def test_link_leaving_the_folder_is_critical(run_cli: Runner, tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path / "hf", {"model_type": "bert"})
    (tmp_path / "secret").write_text("outside")
    (folder / "weights.bin").symlink_to(tmp_path / "secret")
    code, found = _findings(run_cli, folder)
    [link] = [f for f in found if f["rule_id"] == "MLA103"]
    assert link["severity"] == "critical"
    assert code == 1


def test_folder_models_are_scanned_not_run(
    run_cli: Runner, workspace: Workspace, tmp_path: Path
) -> None:
    folder = _mlflow_folder(tmp_path / "model", _fitted())
    result = run_cli("scan", folder, "--data", workspace.holdout, "--target", TARGET)
    assert result.report["subject"]["model"]["format"] == "model-folder"
    assert "scanned but not run" in result.result("MLA702")["reason"]


def test_folder_digest_covers_every_file(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path / "hf", {"model_type": "bert"})
    first, size = sha256_tree(folder)
    assert size > 0
    assert sha256_tree(folder)[0] == first
    (folder / "tokenizer.json").write_text('{"version": "1.1"}')
    assert sha256_tree(folder)[0] != first


def test_directory_that_is_not_a_model_folder_is_exit_2(run_cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    result = run_cli("scan", tmp_path / "plain")
    assert result.exit_code == 2
    assert "not a model folder" in result.stderr


@pytest.mark.parametrize("bad", ["flavors: [1, 2", "just text"])
def test_malformed_mlmodel_is_mla107(run_cli: Runner, tmp_path: Path, bad: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text(bad)
    _, found = _findings(run_cli, folder)
    assert [f["rule_id"] for f in found if f["severity"] == "high"] == ["MLA107"]


def test_archive_in_a_folder_is_scanned_member_by_member(run_cli: Runner, tmp_path: Path) -> None:
    import zipfile

    folder = _mlflow_folder(tmp_path / "model", _fitted())
    canary = tmp_path / "canary"
    with zipfile.ZipFile(folder / "artifacts.zip", "w") as archive:
        archive.writestr("extra/settings.bin", pickle.dumps(_Payload(canary)))
    code, found = _findings(run_cli, folder)
    assert code == 1
    critical = [f for f in found if f["rule_id"] == "MLA101" and f["severity"] == "critical"]
    assert critical
    assert any("artifacts.zip/extra/settings.bin" in json.dumps(f) for f in critical)
    assert not canary.exists()
