"""MLA501 against the `bandit -r` command, and MLA601 on 500 requirements against a full OSV export.

    .venv/bin/python bench/code_deps.py [--osv PATH] [--tree DIR]

One run, one Markdown table on stdout (progress on stderr):

1. MLA501 (bandit in-process, through `mlaudit scan --select MLA501`) against `bandit -r -f json`
   on the same tree (default: the installed scikit-learn sources), both as commands, wall
   time, one run each. mlaudit's plugin is installed, so both run the same tests (bandit's and
   mlaudit's ML checks). Goal: mlaudit / bandit <= 1.1.
2. MLA601 on 500 pinned requirements against an OSV PyPI export: the real one when `--osv` (or
   the `mlaudit db fetch` default location) has it, else a generated one of 40,000 records in
   OSV's format. Timed: building the index (once per database), then the cached path that
   every later scan takes: digest the database, open its index, parse the requirements, match.
   Goal: cached path <= 2 s. The whole `mlaudit scan` command (interpreter start-up, imports,
   model file scan included) is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
RECORDS = 40_000
PACKAGES = 8_000
REQUIREMENTS = 500


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode not in (0, 1):
        failure = completed.stderr[-2000:]
        raise SystemExit(f"{command[0]} failed ({completed.returncode}): {failure}")
    return elapsed, completed.returncode


def tiny_model(folder: Path) -> Path:
    import joblib
    from sklearn.linear_model import LogisticRegression

    path = folder / "model.joblib"
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    return path


def bandit_rows(
    tree: Path, label: str, work: Path, model: Path, env: dict[str, str]
) -> list[list[str]]:
    files = sum(1 for _ in tree.rglob("*.py"))
    log(f"bandit -r {tree} ({files} files)")
    bandit_json = work / "bandit.json"
    bandit_s, _ = timed(
        [str(VENV_BIN / "bandit"), "-r", "-q", "-f", "json", "-o", str(bandit_json), str(tree)]
    )
    log(f"  {bandit_s:.1f} s; mlaudit scan --select MLA501")
    out = work / "mla501"
    mlaudit_s, _ = timed(
        [str(VENV_BIN / "mlaudit"), "scan", str(model), "--source", str(tree), "--select",
         "MLA501", "--profile", "thorough", "-q", "-o", str(out), "--format", "json"],
        env,
    )
    log(f"  {mlaudit_s:.1f} s")
    bandit_results = json.loads(bandit_json.read_text())["results"]
    expected = sum(1 for r in bandit_results if not r["test_id"].startswith("ML"))
    result = json.loads((out / "report.json").read_text())["results"][0]
    ratio = mlaudit_s / bandit_s
    return [
        ["MLA501 vs `bandit -r`", f"{label}, {files} files", "bandit -r",
         f"{bandit_s:.1f}", f"{expected} issues (+{len(bandit_results) - expected} ML)", "", ""],
        ["", "", "mlaudit scan --select MLA501", f"{mlaudit_s:.1f}",
         f"{len(result['findings'])} findings", f"{ratio:.2f}x bandit",
         "met" if ratio <= 1.1 else "missed"],
    ]


def generated_export(path: Path) -> Path:
    """40,000 OSV records over 8,000 packages: ranges, version lists, aliases, CVSS vectors."""
    rng = random.Random(0)
    vectors = [
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
    ]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for number in range(RECORDS):
            package = f"package-{number % PACKAGES:05d}"
            fixed_minor = rng.randint(1, 20)
            versions = [f"1.{m}.{p}" for m in range(fixed_minor) for p in range(3)]
            record = {
                "schema_version": "1.6.0",
                "id": f"GHSA-{number:04x}-bench-{number % 97:04x}",
                "modified": f"2025-{1 + number % 12:02d}-{1 + number % 28:02d}T12:00:00Z",
                "published": "2024-01-01T00:00:00Z",
                "aliases": [f"CVE-2024-{10000 + number}"],
                "summary": f"Generated advisory {number} for {package}",
                "details": "A generated record with the size and shape of a real advisory. " * 6,
                "severity": [{"type": "CVSS_V3" if "3.1" in v else "CVSS_V4", "score": v}
                             for v in [rng.choice(vectors)]],
                "affected": [{
                    "package": {"ecosystem": "PyPI", "name": package,
                                "purl": f"pkg:pypi/{package}"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [
                        {"introduced": "0"}, {"fixed": f"1.{fixed_minor}.0"}]}],
                    "versions": versions,
                }],
                "references": [{"type": "ADVISORY",
                                "url": f"https://example.org/advisories/{number}"}],
                "database_specific": {"cwe_ids": ["CWE-502"], "severity": "HIGH"},
            }
            if number % 50 == 0:
                record["withdrawn"] = "2025-02-01T00:00:00Z"
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return path


def package_names(database: Path) -> list[str]:
    """Every PyPI package the export names (read from the records, as a user's set would)."""
    names: set[str] = set()
    with zipfile.ZipFile(database) as archive:
        for member in archive.namelist():
            record = json.loads(archive.read(member))
            names.update(
                a["package"]["name"] for a in record.get("affected", [])
                if a.get("package", {}).get("ecosystem") == "PyPI"
            )
    return sorted(names)


def requirements_file(path: Path, packages: list[str]) -> Path:
    rng = random.Random(1)
    chosen = rng.sample(packages, REQUIREMENTS)
    path.write_text(
        "".join(f"{name}==1.{rng.randint(0, 25)}.{rng.randint(0, 2)}\n" for name in chosen)
    )
    return path


def osv_rows(
    database: Path, real: bool, work: Path, model: Path, env: dict[str, str]
) -> list[list[str]]:
    from mlaudit.deps.manifests import read_dependencies
    from mlaudit.deps.matching import match, resolve
    from mlaudit.deps.osv import open_database

    log(f"indexing {database} ({database.stat().st_size / 1e6:.0f} MB)")
    started = time.perf_counter()
    with open_database(database) as index:
        build_s = time.perf_counter() - started
        info = index.info
    requirements = requirements_file(work / "requirements.txt", package_names(database))
    log(f"  built in {build_s:.1f} s ({info.records} records); cached path")
    started = time.perf_counter()
    dependencies = read_dependencies([requirements])
    resolved, _ = resolve(dependencies, None)
    with open_database(database) as index:
        assert index.info.index == "cached"
        matches = match(resolved, index)
    cached_s = time.perf_counter() - started
    out = work / "mla601"
    scan_s, _ = timed(
        [str(VENV_BIN / "mlaudit"), "scan", str(model), "--requirements", str(requirements),
         "--vuln-db", str(database), "--select", "MLA601", "-q", "-o", str(out),
         "--format", "json"],
        env,
    )
    rule = json.loads((out / "report.json").read_text())["results"][0]
    kind = "real OSV PyPI export" if real else "generated OSV export"
    return [
        ["MLA601, 500 requirements", f"{kind}, {info.records} records "
         f"({info.withdrawn} withdrawn), {database.stat().st_size / 1e6:.0f} MB",
         "index build (once per database)", f"{build_s:.2f}", f"{info.packages} packages",
         "", ""],
        ["", "", "cached: digest + open index + parse + match", f"{cached_s:.2f}",
         f"{len(matches)} advisories on {len({m.dependency.name for m in matches})} packages",
         "goal <= 2 s", "met" if cached_s <= 2 else "missed"],
        ["", "", "whole `mlaudit scan --select MLA601` command", f"{scan_s:.2f}",
         f"rule itself {rule['duration_s']:.2f} s", "", ""],
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--osv", type=Path, help="OSV PyPI export (zip or folder)")
    parser.add_argument("--tree", type=Path, help="source tree for MLA501 (default: sklearn)")
    args = parser.parse_args()
    import sklearn

    from mlaudit.deps.osv import cache_dir

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        # A fresh index cache, so the build is measured; the scans share it.
        env = {**os.environ, "MLAUDIT_CACHE_DIR": str(work / "cache")}
        real = args.osv or cache_dir() / "osv" / "PyPI-all.zip"
        os.environ["MLAUDIT_CACHE_DIR"] = env["MLAUDIT_CACHE_DIR"]
        model = tiny_model(work)
        tree = args.tree or Path(sklearn.__file__).parent
        label = str(args.tree) if args.tree else f"scikit-learn {sklearn.__version__} sources"
        rows = bandit_rows(tree, label, work, model, env)
        database = real if real.exists() else generated_export(work / "all.zip")
        rows += osv_rows(database, real.exists(), work, model, env)
    print("| benchmark | input | tool / step | wall s | result | ratio | goal |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nmachine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
          f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
