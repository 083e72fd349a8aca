"""The CI integrations: the GitHub Action, the pre-commit hook and the GitLab example.

Their shell is run for real on a clean pickle and a hostile one (built by the corpus
generators and only ever scanned), the way GitHub and pre-commit would run it.
"""

from __future__ import annotations

import os
import pickle
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hostile_pickles import build_hostile_corpus

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILES = [
    "model.pkl", "model.pickle", "model.dill", "model.joblib", "weights.pt", "weights.pth",
    "pytorch_model.bin", "last.ckpt", "model.onnx", "model.h5", "model.hdf5", "model.keras",
    "model.safetensors", "arrays.npy", "arrays.npz", "model.skops", "models/deep/MODEL.PKL",
    "export/saved_model.pb", "saved_model.pb",
]
NOT_MODEL_FILES = [
    "train.py", "model.py", "notes.txt", "data.csv", "graph.pb", "model.pbtxt", "model.pkl.py",
    "README.md", "requirements.txt", "pkl",
]


def _load(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text())


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras


def _environment() -> dict[str, str]:
    """This venv's ``mlaudit`` first on PATH, as pre-commit's hook env or the Action's Python
    would have it, and no ``MLAUDIT_*`` settings from the caller."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLAUDIT_")}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    return environment


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A clean pickle (in a folder whose name has a space), a hostile one, and its canary."""
    folder = tmp_path / "my models"
    folder.mkdir()
    clean = folder / "clean.pkl"
    clean.write_bytes(pickle.dumps({"weights": [0.5, 1.5], "classes": ["no", "yes"]}))
    canary = tmp_path / "CANARY"
    [hostile] = build_hostile_corpus(folder, canary, ["p0_global_os_system"])
    return clean, hostile.path, canary


# --------------------------------------------------------------------------- pre-commit


def _hook() -> dict[str, Any]:
    hooks: list[dict[str, Any]] = _load(".pre-commit-hooks.yaml")
    [hook] = [h for h in hooks if h["id"] == "mlaudit-artifact-scan"]
    return hook


def test_hook_definition() -> None:
    hook = _hook()
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is True
    assert hook["entry"] == "mlaudit scan-artifacts"
    pattern = re.compile(hook["files"])
    assert [f for f in MODEL_FILES if not pattern.search(f)] == []
    assert [f for f in NOT_MODEL_FILES if pattern.search(f)] == []


def test_hook_dependencies_are_the_format_extras() -> None:
    """The readers the hook installs are the extras' own requirements, ranges and all."""
    extras = _extras()
    wanted = {
        *extras["skops"], *extras["keras"], *extras["mlflow"], *extras["7z"],
        *(r for r in extras["onnx"] if r.startswith("onnx>")),
    }
    assert set(_hook()["additional_dependencies"]) == wanted


def _run_hook(files: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    # pre-commit splits the entry like a shell and appends the file names (relative paths).
    command = [*shlex.split(_hook()["entry"]), *(str(f.relative_to(cwd)) for f in files)]
    return subprocess.run(
        command, cwd=cwd, env=_environment(), capture_output=True, text=True, check=False,
        timeout=300,
    )


@pytest.mark.slow
def test_hook_passes_a_clean_pickle_and_blocks_a_hostile_one(
    models: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    clean, hostile, canary = models
    before = sorted(tmp_path.rglob("*"))
    passed = _run_hook([clean], tmp_path)
    assert passed.returncode == 0, passed.stderr
    failed = _run_hook([hostile, clean], tmp_path)
    assert failed.returncode == 1, failed.stderr
    # One line per file: the failure did not stop the second scan.
    hostile_line, clean_line = failed.stderr.splitlines()
    assert hostile_line.startswith(f"{hostile.relative_to(tmp_path)}: ")
    assert "gate FAILED" in hostile_line
    assert "os.system" in hostile_line
    assert clean_line.startswith(f"{clean.relative_to(tmp_path)}: ")
    assert "gate PASSED" in clean_line
    assert sorted(tmp_path.rglob("*")) == before  # no report written, nothing else either
    assert not canary.exists()


# --------------------------------------------------------------------------- GitHub Action


def _action() -> dict[str, Any]:
    action: dict[str, Any] = _load("action.yml")
    return action


def _step(name: str) -> dict[str, Any]:
    return next(s for s in _action()["runs"]["steps"] if s["name"] == name)


def test_action_definition() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    inputs = action["inputs"]
    assert inputs["model"]["required"] is True
    assert {"data", "train", "holdout", "target", "config", "fail-on", "args", "extras"} <= set(
        inputs
    )
    assert set(inputs["extras"]["default"].split(",")) <= set(_extras())
    install = _step("Install mlaudit")
    assert "$GITHUB_ACTION_PATH" in install["run"]
    upload = _step("Upload SARIF to code scanning")
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert "always()" in upload["if"]
    # Every step that runs a script gets the inputs through its environment, never pasted in.
    for step in action["runs"]["steps"]:
        assert "${{" not in step.get("run", "")


def _run_scan_step(
    workspace: Path, model: Path, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], Path]:
    """The scan step's script as GitHub runs ``shell: bash``, in a fresh ``workspace``, with
    the inputs in its environment."""
    workspace.mkdir()
    out = workspace / "mlaudit-report"
    github_output = workspace / "github-output"
    github_output.write_text("")
    summary = workspace / "summary.md"
    names = ("DATA", "TRAIN", "HOLDOUT", "TARGET", "CONFIG", "FAIL_ON", "ARGS")
    environment = _environment() | {name: "" for name in names} | {
        "PYTHON": sys.executable, "MODEL": str(model), "OUT": str(out), "SUMMARY": "true",
        "GITHUB_OUTPUT": str(github_output), "GITHUB_STEP_SUMMARY": str(summary),
    } | inputs
    completed = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
         _step("Scan the model")["run"]],
        cwd=workspace, env=environment, capture_output=True, text=True, check=False, timeout=300,
    )
    outputs = dict(
        line.split("=", 1) for line in github_output.read_text().splitlines() if "=" in line
    )
    return completed, outputs, summary


@pytest.mark.slow
def test_action_scan_step_exits_as_mlaudit_and_leaves_the_sarif(
    models: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    clean, hostile, canary = models
    args = "--select MLA1 --ignore 'MLA105'"  # quoted as a workflow author might
    passed, outputs, summary = _run_scan_step(tmp_path / "clean", clean, ARGS=args)
    assert passed.returncode == 0, passed.stderr
    assert outputs["exit-code"] == "0"
    assert Path(tmp_path / "clean", outputs["sarif"]).is_file()
    assert "gate ✅ passed" in summary.read_text()

    failed, outputs, _ = _run_scan_step(tmp_path / "hostile", hostile, ARGS=args, FAIL_ON="high")
    assert failed.returncode == 1, failed.stderr
    assert outputs["exit-code"] == "1"
    assert Path(tmp_path / "hostile", outputs["sarif"]).is_file()  # uploaded after a failure
    assert not canary.exists()

    broken, outputs, _ = _run_scan_step(tmp_path / "broken", tmp_path / "missing.pkl")
    assert broken.returncode == 2
    assert outputs == {"exit-code": "2"}  # no SARIF, so nothing to upload


# --------------------------------------------------------------------------- GitLab


def test_gitlab_example_publishes_the_junit_report() -> None:
    job = _load("examples/ci/gitlab-ci.yml")["model-audit"]
    script = " ".join(job["script"])
    assert "--format junit" in script
    assert job["artifacts"]["reports"]["junit"] == "mlaudit-report/report.junit.xml"
    assert job["artifacts"]["when"] == "always"
