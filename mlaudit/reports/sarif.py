"""``report.sarif``: SARIF 2.1.0 for code-scanning dashboards (GitHub code scanning included).

Every rule that ran or was selected is a ``tool.driver.rules[]`` entry with its documentation
and a ``security-severity``; every finding is a result whose ``primaryLocationLineHash`` is
mlaudit's own fingerprint, so dashboards track a finding across runs exactly as mlaudit does.
Binary artifacts (a model file, a data file) have no lines: GitHub requires a region, so they
point at line 1. Waived findings stay in the log as results with an accepted external
suppression carrying the waiver's reason, so a dashboard shows them as dismissed, not gone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from mlaudit.reports.ruledocs import rule_doc

SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub reads security-severity as a CVSS-like score: >= 9 critical, >= 7 high, >= 4 medium.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
HELP_URI = "https://github.com/mlaudit/mlaudit/blob/main/rules/{rule_id}.md"


def _uri(artifact: str) -> str:
    path = PurePath(artifact)
    return path.as_posix() if not path.is_absolute() else path.as_uri()


def _rule(result: Mapping[str, Any], severity: str) -> dict[str, Any]:
    rule_id = result["rule_id"]
    doc = rule_doc(rule_id)
    summary = doc.summary if doc else result["name"]
    return {
        "id": rule_id,
        "name": "".join(part.capitalize() for part in result["name"].split()),
        "shortDescription": {"text": summary},
        "fullDescription": {"text": doc.what if doc else summary},
        "help": {
            "text": doc.markdown if doc else summary,
            "markdown": doc.markdown if doc else summary,
        },
        "helpUri": HELP_URI.format(rule_id=rule_id),
        "defaultConfiguration": {"level": LEVELS[severity]},
        "properties": {
            "security-severity": SECURITY_SEVERITY[severity],
            "tags": ["security", result["family"]],
        },
    }


def _result(finding: Mapping[str, Any], rule_index: int) -> dict[str, Any]:
    location = finding["location"]
    region: dict[str, Any] = {"startLine": location.get("line") or 1}
    if location.get("column"):
        region["startColumn"] = location["column"]
    physical = {"artifactLocation": {"uri": _uri(location["artifact"])}, "region": region}
    sarif: dict[str, Any] = {
        "ruleId": finding["rule_id"],
        "ruleIndex": rule_index,
        "level": LEVELS[finding["severity"]],
        "message": {"text": f"{finding['title']}: {finding['message']}"},
        "locations": [{"physicalLocation": physical}],
        "partialFingerprints": {"primaryLocationLineHash": finding["fingerprint"]},
        "properties": {
            "severity": finding["severity"],
            "confidence": finding["confidence"],
            "security-severity": SECURITY_SEVERITY[finding["severity"]],
        },
    }
    if location.get("pointer"):
        sarif["locations"][0]["logicalLocations"] = [{"name": location["pointer"]}]
    if finding.get("cwe"):
        sarif["properties"]["tags"] = list(finding["cwe"])
    return sarif


def _suppression(waiver: Mapping[str, Any]) -> dict[str, Any]:
    justification = waiver.get("reason") or "waived"
    if waiver.get("owner"):
        justification += f" (owner: {waiver['owner']})"
    if waiver.get("expires"):
        justification += f"; expires {waiver['expires']}"
    return {"kind": "external", "status": "accepted", "justification": justification}


class SarifRenderer:
    filename = "report.sarif"

    def render(self, report: Mapping[str, Any]) -> bytes:
        rules: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        waived: dict[str, list[dict[str, Any]]] = {}
        for item in report.get("suppressed", []):
            waived.setdefault(item["finding"]["rule_id"], []).append(item)
        for result in report.get("results", []):
            findings = result.get("findings", [])
            severities = [f["severity"] for f in findings]
            worst = min(severities, key=list(LEVELS).index) if severities else "medium"
            rules.append(_rule(result, worst))
            results.extend(_result(f, len(rules) - 1) for f in findings)
            for item in waived.get(result["rule_id"], []):
                suppressed = _result(item["finding"], len(rules) - 1)
                suppressed["suppressions"] = [_suppression(item["waiver"])]
                results.append(suppressed)
        model = report["subject"]["model"]
        reference = model.get("path") or model.get("reference") or "model"
        document = {
            "$schema": SCHEMA,
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "mlaudit",
                            "version": report["tool"]["version"],
                            "informationUri": "https://github.com/mlaudit/mlaudit",
                            "rules": rules,
                        }
                    },
                    # One automation id per model: code scanning keeps each model's alerts apart.
                    "automationDetails": {"id": f"mlaudit/{PurePath(reference).name}/"},
                    "results": results,
                    "invocations": [
                        {
                            "executionSuccessful": True,
                            "commandLine": report["run"]["command"],
                            "startTimeUtc": report["run"]["started_at"],
                            "endTimeUtc": report["run"]["finished_at"],
                        }
                    ],
                    "properties": {
                        "gate": report["gate"],
                        "score": report["score"],
                        "grade": report["grade"],
                    },
                }
            ],
        }
        return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
