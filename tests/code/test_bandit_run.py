"""bandit run in-process: the same results as the bandit command, its config, batches, memo."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from mlaudit.code import bandit_run
from mlaudit.code.bandit_run import BanditOptions, discover_options, run_bandit
from mlaudit.core.errors import ConfigError

TREE = {
    "app/serve.py": (
        "import subprocess\n"
        "import hashlib\n\n"
        "def run(cmd):\n"
        "    subprocess.call(cmd, shell=True)\n"
        "    return hashlib.md5(cmd.encode()).hexdigest()\n"
    ),
    "app/quiet.py": "def add(a, b):\n    return a + b\n",
    "app/silenced.py": (
        "import pickle  # nosec B403\n\ndef load(b):\n    return pickle.loads(b)  # nosec\n"
    ),
    "app/broken.py": "def broken(:\n    pass\n",
    "train.py": "import joblib\nassert True\nmodel = joblib.load('m.joblib')\n",
}


def _tree(root: Path, files: dict[str, str] = TREE) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _issues(run: bandit_run.BanditRun) -> set[tuple[str, int, str]]:
    return {(i.relative, i.line, i.test_id) for i in run.issues}


def test_same_issues_and_skips_as_the_bandit_command(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    run = run_bandit(root, discover_options(root))
    completed = subprocess.run(
        [sys.executable, "-m", "bandit", "-r", "-q", "-f", "json", str(root)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    report = json.loads(completed.stdout)
    expected = {
        (Path(r["filename"]).relative_to(root).as_posix(), r["line_number"], r["test_id"])
        for r in report["results"]
    }
    assert _issues(run) == expected
    assert {"B602", "B324", "B101", "ML02"} <= {t for _, _, t in expected}
    assert not any(path == "app/silenced.py" for path, _, _ in expected)  # nosec honoured
    assert [Path(s.path).name for s in run.skipped] == ["broken.py"]
    assert "syntax error" in run.skipped[0].reason
    assert run.files == 5
    assert run.nosec == 2


def test_issue_records_carry_column_cwe_and_code(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    run = run_bandit(root, BanditOptions())
    shell = next(i for i in run.issues if i.test_id == "B602")
    assert (shell.relative, shell.line, shell.column) == ("app/serve.py", 5, 5)
    assert shell.cwe == 78
    assert shell.code == "subprocess.call(cmd, shell=True)"
    assert shell.severity == "HIGH"


def test_a_bandit_ini_file_at_the_root_is_honoured(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    (root / ".bandit").write_text("[bandit]\nskips = B101,ML02\nexclude = app\n")
    options = discover_options(root)
    assert options.skips == {"B101", "ML02"}
    assert _issues(run_bandit(root, options)) == set()


def test_pyproject_bandit_table_is_honoured(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    (root / "pyproject.toml").write_text('[tool.bandit]\nskips = ["B602", "B324", "B404"]\n')
    options = discover_options(root)
    assert options.config_file == root / "pyproject.toml"
    assert {t for _, _, t in _issues(run_bandit(root, options))} == {"B101", "ML02"}


def test_an_explicit_tests_list_still_runs_mlauditss_tests(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    config = tmp_path / "bandit.yaml"
    config.write_text("tests: [B602]\n")
    run = run_bandit(root, discover_options(root, config))
    assert {t for _, _, t in _issues(run)} == {"B602", "ML02"}


def test_a_missing_or_broken_config_is_a_config_error(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    with pytest.raises(ConfigError, match="does not exist"):
        discover_options(root, tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tests: [unclosed\n")
    with pytest.raises(ConfigError, match="bandit configuration"):
        run_bandit(root, discover_options(root, broken))


def test_files_are_scanned_in_batches_with_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bandit_run, "BATCH_FILES", 2)
    root = _tree(tmp_path / "src")
    messages: list[str] = []
    run = run_bandit(root, BanditOptions(ignore_nosec=True), progress=messages.append)
    assert [m.split(",")[0] for m in messages] == [
        "files scanned 2/5", "files scanned 4/5", "files scanned 5/5",
    ]
    assert all(", ETA " in m and m.endswith(" s") for m in messages)
    assert "app/silenced.py" in {i.relative for i in run.issues}  # ignore_nosec


def test_the_budget_is_checked_before_each_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bandit_run, "BATCH_FILES", 2)
    checks: list[int] = []
    run_bandit(_tree(tmp_path / "src"), BanditOptions(), check_budget=lambda: checks.append(1))
    assert len(checks) == 3


def _records(run: bandit_run.BanditRun) -> tuple[object, ...]:
    return (run.files, run.lines, run.nosec, run.issues, run.skipped)


def test_one_batch_or_many_give_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path / "src")
    whole = run_bandit(root, discover_options(root))
    for size in (1, 2, 3):
        monkeypatch.setattr(bandit_run, "BATCH_FILES", size)
        assert _records(run_bandit(root, discover_options(root))) == _records(whole)
    assert [i.relative for i in whole.issues] == sorted(i.relative for i in whole.issues)


@pytest.mark.slow
def test_memory_stays_bounded_as_the_tree_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What grows with the tree is the file list (a few hundred bytes a file), not ASTs,
    bandit's per-file results or metrics: those go with each batch."""
    monkeypatch.setattr(bandit_run, "BATCH_FILES", 40)
    module = "".join(f"def f{n}(x):\n    return [x * {n} for _ in range(3)]\n" for n in range(10))

    def peak(count: int) -> int:
        root = tmp_path / f"tree{count}"
        for n in range(count):
            package = root / f"p{n // 40}"
            package.mkdir(parents=True, exist_ok=True)
            (package / f"m{n}.py").write_text(module)
        tracemalloc.start()
        run_bandit(root, BanditOptions())
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(40), peak(160)
    per_file = (large - small) / 120
    assert per_file < 4096, (small, large)
