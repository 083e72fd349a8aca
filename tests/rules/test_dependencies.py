"""MLA601 and MLA602 through the CLI, on real OSV advisories (examples/osv)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from mlaudit.deps.environment import Installed
from mlaudit.deps.hygiene import hygiene_issues
from mlaudit.deps.model import Declared, DependencySet, Kind, Origin
from tests.conftest import CliResult, Runner
from tests.deps.conftest import EXAMPLE_OSV, example_records, write_zip

SHA = "sha256:" + "e" * 64


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deps-model") / "model.joblib"
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    return path


def _file(tmp_path: Path, text: str, name: str = "requirements.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _scan(run_cli: Runner, model: Path, *extra: str | Path) -> CliResult:
    return run_cli("scan", model, "--select", "MLA6", *extra)


def test_old_pins_match_real_advisories_with_file_and_line(
    run_cli: Runner, model: Path, tmp_path: Path
) -> None:
    requirements = _file(tmp_path, "numpy==1.26.4\nscikit-learn==1.4.2\ntorch==2.5.1\n")
    result = _scan(run_cli, model, "--requirements", requirements, "--vuln-db", EXAMPLE_OSV)
    assert result.exit_code == 1
    vulns = result.result("MLA601")
    assert vulns["status"] == "failed"
    by_pointer = {f["location"]["pointer"]: f for f in vulns["findings"]}
    sklearn = by_pointer["scikit-learn==1.4.2"]
    assert sklearn["location"]["artifact"] == str(requirements)
    assert sklearn["location"]["line"] == 2
    assert sklearn["title"] == "scikit-learn 1.4.2: CVE-2024-5206"
    assert "GHSA-jw8x-6495-233v, PYSEC-2024-110" in sklearn["message"]
    assert "Fixed in 1.5.0." in sklearn["message"]
    assert (sklearn["severity"], sklearn["cwe"]) == ("medium", ["CWE-921", "CWE-922"])
    assert sklearn["references"][0] == "https://nvd.nist.gov/vuln/detail/CVE-2024-5206"
    torch = by_pointer["torch==2.5.1"]
    assert (torch["severity"], torch["location"]["line"]) == ("critical", 3)
    assert "weights_only" in torch["message"]
    # The fixture database is older than 30 days: that is a finding of its own.
    assert by_pointer["newest modified"]["title"] == "Vulnerability database is out of date"
    database = vulns["metrics"]["database"]
    assert database["records"] == 5
    assert len(database["sha256"]) == 64
    assert database["newest_modified"] == "2025-04-23T16:33:51+00:00"
    assert vulns["metrics"]["dependencies_checked"] == 3


def test_fixed_pins_pass(run_cli: Runner, model: Path, tmp_path: Path) -> None:
    requirements = _file(tmp_path, "scikit-learn==1.5.0\ntorch==2.6.0\n")
    config = _file(tmp_path, "[rules.MLA601]\nmax_age_days = 0\n", "mlaudit.toml")
    result = _scan(
        run_cli, model, "--requirements", requirements, "--vuln-db", EXAMPLE_OSV,
        "--config", config, "--select", "MLA601",
    )
    assert result.result("MLA601")["status"] == "passed"
    assert result.exit_code == 0


def test_the_database_comes_from_the_environment_or_the_file_too(
    run_cli: Runner, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requirements = _file(tmp_path, "scikit-learn==1.4.2\n")
    database = write_zip(tmp_path / "all.zip", example_records())
    monkeypatch.setenv("MLAUDIT_VULN_DB", str(database))
    from_env = _scan(run_cli, model, "--requirements", requirements, "--select", "MLA601")
    assert from_env.result("MLA601")["metrics"]["database"]["format"] == "zip"
    monkeypatch.delenv("MLAUDIT_VULN_DB")
    _file(tmp_path, f'vuln_db = "{EXAMPLE_OSV}"\n', "mlaudit.toml")
    from_file = _scan(run_cli, model, "--requirements", requirements, "--select", "MLA601")
    assert from_file.result("MLA601")["metrics"]["database"]["format"] == "folder"


def test_skipped_without_dependencies_or_database(
    run_cli: Runner, model: Path, tmp_path: Path
) -> None:
    nothing = _scan(run_cli, model)
    assert nothing.result("MLA601")["reason"] == "no dependencies: give --requirements or --env"
    assert nothing.result("MLA602")["reason"] == "no --requirements given"
    requirements = _file(tmp_path, "numpy==1.26.4\n")
    no_db = _scan(run_cli, model, "--requirements", requirements)
    assert no_db.result("MLA601")["status"] == "skipped"
    assert "--vuln-db" in no_db.result("MLA601")["reason"]


def test_a_corrupt_database_is_exit_2_without_a_report(
    run_cli: Runner, model: Path, tmp_path: Path
) -> None:
    requirements = _file(tmp_path, "numpy==1.26.4\n")
    truncated = tmp_path / "all.zip"
    good = write_zip(tmp_path / "good.zip", example_records()).read_bytes()
    truncated.write_bytes(good[: len(good) - 40])
    result = _scan(run_cli, model, "--requirements", requirements, "--vuln-db", truncated)
    assert result.exit_code == 2
    assert result.stderr.startswith("mlaudit: error: vulnerability database")
    assert "Traceback" not in result.stderr
    assert not (result.output_dir / "report.json").exists()


def test_env_matches_the_installed_distributions(run_cli: Runner, model: Path) -> None:
    result = _scan(run_cli, model, "--env", "--vuln-db", EXAMPLE_OSV)
    metrics = result.result("MLA601")["metrics"]
    assert metrics["environment"] is True
    assert metrics["dependencies_checked"] > 10  # this environment's distributions
    assert result.result("MLA602")["status"] == "skipped"


def test_hygiene_fires_with_file_and_line(run_cli: Runner, model: Path, tmp_path: Path) -> None:
    requirements = _file(
        tmp_path,
        "--extra-index-url https://pypi.internal.example/simple\n"
        "numpy\n"
        "pandas>=2\n"
        f"scikit-learn==1.4.2 --hash={SHA}\n"
        "joblib==1.4.2\n"
        "git+https://github.com/org/features@main#egg=features\n"
        "http://downloads.example.org/tool-1.0.tar.gz\n"
        "this line is broken ((\n",
    )
    result = _scan(run_cli, model, "--requirements", requirements, "--vuln-db", EXAMPLE_OSV)
    hygiene = result.result("MLA602")
    assert hygiene["status"] == "failed"
    found = {(f["title"], f["location"]["line"], f["severity"]) for f in hygiene["findings"]}
    assert found == {
        ("Extra package index", 1, "medium"),
        ("Unpinned requirement", 2, "medium"),
        ("Requirement pinned to a range only", 3, "low"),
        ("Requirement without a hash in a hashed file", 5, "medium"),
        ("VCS dependency on a moving reference", 6, "medium"),
        ("Dependency downloaded over plain HTTP", 7, "high"),
        ("Dependency line not understood", 8, "medium"),
    }
    # The broken line is reported, and the rest of the file was still checked:
    vulns = result.result("MLA601")
    assert "scikit-learn==1.4.2" in {f["location"]["pointer"] for f in vulns["findings"]}
    assert vulns["metrics"]["unparsed_lines"] == [f"{requirements}:8"]
    assert vulns["metrics"]["unresolved"] == ["features", "numpy", "pandas", "tool"]


def test_hygiene_is_quiet_on_a_hashed_lock(run_cli: Runner, model: Path, tmp_path: Path) -> None:
    requirements = _file(
        tmp_path, f"numpy==1.26.4 --hash={SHA}\nscikit-learn==1.5.0 \\\n    --hash={SHA}\n"
    )
    result = _scan(run_cli, model, "--requirements", requirements, "--select", "MLA602")
    assert result.result("MLA602")["status"] == "passed"
    assert result.result("MLA602")["metrics"]["hashed"] == 2


def test_pyproject_ranges_are_fine_when_a_lock_pins_them(
    run_cli: Runner, model: Path, tmp_path: Path
) -> None:
    pyproject = _file(tmp_path, '[project]\nname = "x"\ndependencies = ["numpy>=1.26"]\n',
                      "pyproject.toml")
    _file(tmp_path, '[[package]]\nname = "numpy"\nversion = "1.26.4"\n'
          'sdist = { url = "https://f/numpy.tar.gz", hash = "sha256:aa" }\n', "uv.lock")
    result = _scan(run_cli, model, "--requirements", pyproject, "--select", "MLA602")
    assert result.result("MLA602")["status"] == "passed"
    unlocked = tmp_path / "unlocked"
    unlocked.mkdir()
    (unlocked / "pyproject.toml").write_text(pyproject.read_text())
    alone = _scan(run_cli, model, "--requirements", unlocked / "pyproject.toml",
                  "--select", "MLA602")
    [finding] = alone.result("MLA602")["findings"]
    assert (finding["title"], finding["location"]["line"]) == (
        "Requirement pinned to a range only", 3
    )


def test_installed_packages_nothing_needs_are_reported() -> None:
    def dist(name: str, *requires: str) -> Installed:
        return Installed(name, "1.0", requires, ())

    installed = {
        "fastapi": dist("fastapi", "starlette>=0.37", "uvicorn ; extra == 'standard'"),
        "starlette": dist("starlette", "anyio"),
        "anyio": dist("anyio"),
        "uvicorn": dist("uvicorn"),
        "leftover": dist("leftover"),
        "pip": dist("pip"),
    }
    requirements = DependencySet(
        (Declared("fastapi", "fastapi==1.0", Origin("r.txt", 1), Kind.REQUIREMENT, "==1.0", "1.0",
                  hashes=(SHA,)),),
        (), (), ("r.txt",),
    )
    issues = hygiene_issues(requirements, installed, require_hashes=True, ignore_installed=["pip"])
    assert sorted((i.check, i.subject) for i in issues) == [
        ("not-named", "leftover"), ("not-named", "uvicorn"),
    ]
    with_extra = DependencySet(
        (dataclasses.replace(requirements.requirements[0], extras=("standard",)),), (), (), (),
    )
    issues = hygiene_issues(with_extra, installed, require_hashes=True, ignore_installed=["pip"])
    assert [i.subject for i in issues] == ["leftover"]
