"""MLA802's bandit tests: each case fires on its fixture and stays quiet on the safe form.

Real bandit runs the fixtures under tests/fixtures/serving (in-process, as MLA802 does, and
once as the plain ``bandit`` command, to show the tests are registered with bandit itself).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from mlaudit.code.bandit_run import BanditOptions, CodeIssue, discover_options, run_bandit
from mlaudit.serving.bandit_tests import SERVING_TESTS, registered_with_bandit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "serving"
CASES = sorted(SERVING_TESTS)


@pytest.fixture(scope="module")
def issues_by_file() -> dict[str, list[CodeIssue]]:
    found: dict[str, list[CodeIssue]] = defaultdict(list)
    for issue in run_bandit(FIXTURES, BanditOptions()).issues:
        if issue.test_id in SERVING_TESTS:
            found[Path(issue.path).name].append(issue)
    return found


def _fixtures(test_id: str, kind: str) -> list[Path]:
    paths = sorted(FIXTURES.glob(f"{test_id.lower()}_{kind}*.py"))
    assert paths, f"no {kind} fixture for {test_id}"
    return paths


def test_five_tests_registered_with_bandit() -> None:
    assert CASES == ["MLS01", "MLS02", "MLS03", "MLS04", "MLS05"]
    run_bandit(FIXTURES / "mls02_quiet.py", BanditOptions())  # loads bandit's plugins
    assert registered_with_bandit()


@pytest.mark.parametrize("test_id", CASES)
def test_fires(test_id: str, issues_by_file: dict[str, list[CodeIssue]]) -> None:
    for path in _fixtures(test_id, "fire"):
        ids = {issue.test_id for issue in issues_by_file[path.name]}
        assert test_id in ids, path.name


@pytest.mark.parametrize("test_id", CASES)
def test_quiet(test_id: str, issues_by_file: dict[str, list[CodeIssue]]) -> None:
    for path in _fixtures(test_id, "quiet"):
        ids = {issue.test_id for issue in issues_by_file[path.name]}
        assert test_id not in ids, (path.name, issues_by_file[path.name])


def test_each_fire_fixture_fires_where_expected(
    issues_by_file: dict[str, list[CodeIssue]],
) -> None:
    where = {
        (path, issue.line, issue.test_id)
        for path, issues in issues_by_file.items() for issue in issues
    }
    assert {
        ("mls01_fire_fastapi.py", 16, "MLS01"),  # predict() runs the model; health() does not
        ("mls01_fire_bentoml.py", 13, "MLS01"),
        ("mls02_fire_uvicorn.py", 7, "MLS02"),
        ("mls03_fire_flask.py", 9, "MLS03"),  # app.run("0.0.0.0", 5000): positional host
        ("mls04_fire_mlflow.py", 9, "MLS04"),
        ("mls05_fire_fastapi.py", 14, "MLS05"),  # rows: list[list[float]]
        ("mls05_fire_fastapi.py", 23, "MLS05"),  # UploadFile, no size check
        ("mls05_fire_fastapi.py", 29, "MLS05"),  # raw bytes
    } <= where
    kserve = next(i for i in issues_by_file["mls01_fire_kserve.py"] if i.test_id == "MLS01")
    assert kserve.confidence == "LOW"  # exposed by KServe's server: a gateway may guard it
    # MLflow's predict is exposed by its deployment, not by code: nothing to say about auth.
    assert "MLS01" not in {i.test_id for i in issues_by_file["mls04_fire_mlflow.py"]}
    assert {i.test_id for i in issues_by_file["mls01_quiet_middleware.py"]} == set()


def test_nosec_silences_one_line(tmp_path: Path) -> None:
    source = (FIXTURES / "mls03_fire.py").read_text().replace(
        'port=8000)', 'port=8000)  # nosec MLS03'
    )
    (tmp_path / "serve.py").write_text(source)
    issues = run_bandit(tmp_path, BanditOptions()).issues
    assert "MLS03" not in {i.test_id for i in issues}


def test_a_plain_bandit_command_runs_the_serving_tests() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-f", "json", "-r",
         str(FIXTURES / "mls04_fire_fastapi.py"), str(FIXTURES / "mls02_fire_flask.py")],
        capture_output=True, text=True, check=False, timeout=120,
    )
    report = json.loads(completed.stdout)
    found = {(Path(r["filename"]).name, r["test_id"]) for r in report["results"]}
    assert {("mls04_fire_fastapi.py", "MLS04"), ("mls02_fire_flask.py", "MLS02"),
            ("mls02_fire_flask.py", "MLS01")} <= found
    assert report["errors"] == []


def test_a_tree_that_selects_bandit_tests_still_gets_the_serving_tests(tmp_path: Path) -> None:
    (tmp_path / "serve.py").write_text((FIXTURES / "mls03_fire.py").read_text())
    (tmp_path / ".bandit").write_text("[bandit]\ntests = B101\n")
    issues = run_bandit(tmp_path, discover_options(tmp_path)).issues
    assert {i.test_id for i in issues} == {"MLS03"}  # B104 (bind all) was not selected
