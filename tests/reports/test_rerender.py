"""``mlaudit report`` re-renders an archived report; bad input exits 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Runner


def test_rerender_matches_what_scan_wrote(run_cli: Runner, scanned: Path, tmp_path: Path) -> None:
    result = run_cli(
        "report",
        scanned / "report.json",
        "--format",
        "sarif",
        "--format",
        "md",
        "--format",
        "html",
        "-o",
        tmp_path,
    )
    assert result.exit_code == 0, result.stderr
    for name in ("report.sarif", "report.md", "report.html"):
        assert (tmp_path / name).read_bytes() == (scanned / name).read_bytes()
    assert not (tmp_path / "report.json").exists()


def test_rerender_next_to_the_report_never_rewrites_it(
    run_cli: Runner, scanned: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "report.json"
    copy.write_bytes((scanned / "report.json").read_bytes())
    result = run_cli("report", copy, "--format", "json", "--format", "junit")
    assert result.exit_code == 0, result.stderr
    assert copy.read_bytes() == (scanned / "report.json").read_bytes()
    assert (tmp_path / "report.junit.xml").exists()


def test_bad_reports_exit_2_with_one_line(run_cli: Runner, tmp_path: Path) -> None:
    cases = {
        "missing.json": None,
        "garbage.json": b"\xff\x00 not json",
        "list.json": b"[]",
        "partial.json": json.dumps({"schema_version": "1.0.0"}).encode(),
        "future.json": json.dumps(
            {k: {} for k in ("tool", "run", "subject", "results", "score", "grade", "gate")}
            | {"schema_version": "9.0.0"}
        ).encode(),
    }
    messages = {}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        result = run_cli("report", path, "--format", "md")
        assert result.exit_code == 2, name
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        messages[name] = result.stderr
    assert "not an mlaudit report (missing tool" in messages["partial.json"]
    assert "schema 9.0.0" in messages["future.json"]


def test_unknown_format_in_config_exits_2(run_cli: Runner, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('format = ["json", "pdf"]\n')
    result = run_cli("scan", "json:missing", "--config", config)
    assert result.exit_code == 2
    assert "unknown format 'pdf'" in result.stderr
