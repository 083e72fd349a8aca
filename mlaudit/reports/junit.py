"""``report.junit.xml``: one test case per rule for CI test dashboards.

``classname`` is the rule's family and ``name`` its id and name; a failed rule carries its
findings in ``<failure>``, a skipped one its reason in ``<skipped>``, a rule in error its
reason in ``<error>``. Built with the standard library's ElementTree, which escapes text and
attributes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def _findings_text(findings: list[Mapping[str, Any]]) -> str:
    lines = []
    for finding in findings:
        location = finding["location"]
        where = location["artifact"]
        if location.get("line"):
            where += f":{location['line']}"
        if location.get("pointer"):
            where += f" ({location['pointer']})"
        lines.append(f"[{finding['severity']}] {finding['title']}: {finding['message']} at {where}")
    return "\n".join(lines)


class JunitRenderer:
    filename = "report.junit.xml"

    def render(self, report: Mapping[str, Any]) -> bytes:
        results = list(report.get("results", []))
        model = report["subject"]["model"]
        subject = PurePath(model.get("path") or model.get("reference") or "model").name
        counts = {
            status: sum(r["status"] == status for r in results)
            for status in ("failed", "skipped", "error")
        }
        total_time = sum(r.get("duration_s") or 0.0 for r in results)
        suites = ET.Element(
            "testsuites",
            name="mlaudit",
            tests=str(len(results)),
            failures=str(counts["failed"]),
            errors=str(counts["error"]),
            skipped=str(counts["skipped"]),
            time=f"{total_time:.3f}",
        )
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"mlaudit {subject}",
            tests=str(len(results)),
            failures=str(counts["failed"]),
            errors=str(counts["error"]),
            skipped=str(counts["skipped"]),
            time=f"{total_time:.3f}",
            timestamp=report["run"]["started_at"],
        )
        for result in results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=result["family"],
                name=f"{result['rule_id']} {result['name']} [{subject}]",
                time=f"{result.get('duration_s') or 0.0:.3f}",
            )
            findings = result.get("findings", [])
            if result["status"] == "failed":
                worst = findings[0]["severity"] if findings else "low"
                failure = ET.SubElement(
                    case,
                    "failure",
                    type=worst,
                    message=f"{len(findings)} finding(s), worst {worst}",
                )
                failure.text = _findings_text(findings)
            elif result["status"] == "skipped":
                ET.SubElement(case, "skipped", message=result.get("reason") or "skipped")
            elif result["status"] == "error":
                error = ET.SubElement(case, "error", message=result.get("reason") or "error")
                error.text = result.get("reason") or ""
            elif findings:
                output = ET.SubElement(case, "system-out")
                output.text = _findings_text(findings)
        ET.indent(suites)
        document: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
        return document + b"\n"
