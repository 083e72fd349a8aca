"""MLA501 and MLA502 through the CLI: findings with file, line, column and CWE."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from tests.conftest import CliResult, Runner

UNSAFE = {
    "train.py": (
        "import subprocess\n"
        "import torch\n"
        "import yaml\n\n"
        "config = yaml.load(open('config.yaml'))\n"
        "model = torch.load(config['checkpoint'])\n"
        "subprocess.run(config['post_train'], shell=True)\n"
    ),
    "serve.py": "import joblib\n\nmodel = joblib.load(request.files['model'])\n",
}
SAFE = {
    "train.py": (
        "import torch\nimport yaml\n\n"
        "config = yaml.safe_load(open('config.yaml'))\n"
        "model = torch.load(config['checkpoint'], weights_only=True)\n"
    ),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("code-model") / "model.joblib"
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    return path


def _tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def _scan(
    run_cli: Runner, model: Path, source: Path, *extra: str, output_dir: Path | None = None
) -> CliResult:
    return run_cli(
        "scan", model, "--source", source, "--select", "MLA5", *extra, output_dir=output_dir
    )


def test_unsafe_code_fires_both_rules_with_locations(
    run_cli: Runner, model: Path, tmp_path: Path
) -> None:
    source = _tree(tmp_path / "src", UNSAFE)
    result = _scan(run_cli, model, source)
    assert result.exit_code == 1
    bandit = result.result("MLA501")
    assert bandit["status"] == "failed"
    shell = next(f for f in bandit["findings"] if f["location"]["pointer"] == "B602")
    assert shell["location"] == {
        "artifact": str(source / "train.py"), "line": 7, "column": 1, "pointer": "B602",
    }
    assert (shell["severity"], shell["confidence"], shell["cwe"]) == ("high", "high", ["CWE-78"])
    assert shell["references"][0].startswith("https://bandit.readthedocs.io/")
    assert not any(f["location"]["pointer"].startswith("ML") for f in bandit["findings"])
    ml = result.result("MLA502")
    assert ml["status"] == "failed"
    located = {
        (Path(f["location"]["artifact"]).name, f["location"]["line"], f["location"]["pointer"])
        for f in ml["findings"]
    }
    assert located == {
        ("train.py", 5, "ML05"), ("train.py", 6, "ML01"), ("serve.py", 3, "ML02"),
    }
    upload = next(f for f in ml["findings"] if f["location"]["pointer"] == "ML02")
    assert (upload["severity"], upload["cwe"]) == ("high", ["CWE-502"])
    assert ml["metrics"]["files"] == 2


def test_fingerprints_survive_code_moving_down(
    run_cli: Runner, model: Path, tmp_path: Path
) -> None:
    before = _scan(run_cli, model, _tree(tmp_path / "a", UNSAFE), output_dir=tmp_path / "o1")
    moved = {name: "# a new header line\n\n" + text for name, text in UNSAFE.items()}
    after = _scan(run_cli, model, _tree(tmp_path / "b", moved), output_dir=tmp_path / "o2")
    for rule_id in ("MLA501", "MLA502"):
        first = {f["fingerprint"] for f in before.result(rule_id)["findings"]}
        second = {f["fingerprint"] for f in after.result(rule_id)["findings"]}
        assert first == second
        lines = {f["location"]["line"] for f in after.result(rule_id)["findings"]}
        assert lines != {f["location"]["line"] for f in before.result(rule_id)["findings"]}


def test_safe_code_passes(run_cli: Runner, model: Path, tmp_path: Path) -> None:
    result = _scan(run_cli, model, _tree(tmp_path / "src", SAFE))
    assert result.result("MLA501")["status"] == "passed"
    assert result.result("MLA502")["status"] == "passed"
    assert result.exit_code == 0


def test_without_source_both_rules_are_skipped(run_cli: Runner, model: Path) -> None:
    result = run_cli("scan", model, "--select", "MLA5")
    for rule_id in ("MLA501", "MLA502"):
        assert result.result(rule_id)["status"] == "skipped"
        assert result.result(rule_id)["reason"] == "no source tree: give --source"


def test_files_that_are_not_python_are_listed_as_skipped(
    run_cli: Runner, model: Path, tmp_path: Path
) -> None:
    source = _tree(tmp_path / "src", {**SAFE, "notes.py": "this is not python ::\n"})
    result = _scan(run_cli, model, source)
    metrics = result.result("MLA501")["metrics"]
    assert metrics["skipped_files_count"] == 1
    assert metrics["skipped_files"][0]["path"].endswith("notes.py")
    assert "syntax error" in metrics["skipped_files"][0]["reason"]
    assert result.result("MLA501")["status"] == "passed"


def test_a_bandit_config_option_and_nosec(run_cli: Runner, model: Path, tmp_path: Path) -> None:
    source = _tree(tmp_path / "src", UNSAFE)
    (source / "serve.py").write_text(
        "import joblib\n\nmodel = joblib.load(request.files['model'])  # nosec ML02\n"
    )
    bandit_config = tmp_path / "bandit.yaml"
    bandit_config.write_text("skips: [B602, B404]\n")
    config = tmp_path / "mlaudit.toml"
    config.write_text(f'[rules.MLA501]\nconfig = "{bandit_config}"\n')
    result = _scan(run_cli, model, source, "--config", str(config), "--select", "MLA501")
    pointers = {f["location"]["pointer"] for f in result.result("MLA501")["findings"]}
    assert not {"B602", "B404"} & pointers
    assert str(bandit_config) in result.result("MLA501")["metrics"]["config"]
    ml = {f["location"]["pointer"] for f in result.result("MLA502")["findings"]}
    assert "ML02" not in ml  # silenced by its nosec comment
