"""``report.md``: the verdict, a score table by family and the top findings, for CI job
summaries and pull-request comments. No links and no images, so it renders anywhere offline.

Text from models, data and code is written inside code spans or with Markdown's special
characters escaped, so a column named ``<img src=x>`` or ``**bold**`` stays literal.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

TOP_FINDINGS = 10
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")
_SPECIAL = re.compile(r"([\\`*_\[\]|<>~])")


def escape(text: object) -> str:
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _code(text: object) -> str:
    # A pipe would end a table cell even inside a code span (GitHub-flavoured Markdown).
    value = " ".join(str(text).split()).replace("`", "'").replace("|", "\\|")
    return f"`{value}`"


def _coverage_lines(coverage: Mapping[str, Any] | None) -> list[str]:
    """What was audited, under the verdict it qualifies (reports before 1.2 have none)."""
    if not coverage:
        return []
    mark = "" if coverage["complete"] else " (partial audit)"
    lines = ["", f"**Coverage**{mark}: {escape(coverage['summary'])}"]
    lines += [
        f"- {escape(family['family'])} not audited: {escape('; '.join(family['reasons']))}"
        for family in coverage.get("families", [])
        if family["status"] == "not-audited"
    ]
    lines += [f"> **Note**: {escape(note)}" for note in coverage.get("notes", [])]
    return lines


class MarkdownRenderer:
    filename = "report.md"

    def render(self, report: Mapping[str, Any]) -> bytes:
        gate = report["gate"]
        model = report["subject"]["model"]
        verdict = "✅ passed" if gate["passed"] else "❌ failed"
        lines = [
            f"## mlaudit: gate {verdict} · score {report['score']:.1f} · grade {report['grade']}",
            "",
            f"Model {_code(model.get('path') or model.get('reference'))} "
            f"({escape(model.get('format'))}, "
            f"sha256 {_code((model.get('sha256') or 'n/a')[:16])}…)",
            "",
        ]
        lines += [f"- {escape(reason)}" for reason in gate.get("reasons", [])]
        lines += _coverage_lines(report.get("coverage"))
        families: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for result in report.get("results", []):
            families[result["family"]].append(result)
        lines += [
            "",
            "| family | rules | passed | failed | skipped | error | lowest score |",
            "|---|---|---|---|---|---|---|",
        ]
        for family, results in families.items():
            scores = [r["score"] for r in results if r.get("score") is not None]
            status = [r["status"] for r in results]
            lowest = f"{min(scores):.0f}" if scores else "-"
            lines.append(
                f"| {escape(family)} | {len(results)} | {status.count('passed')} | "
                f"{status.count('failed')} | {status.count('skipped')} | "
                f"{status.count('error')} | {lowest} |"
            )
        findings = sorted(
            (f for r in report.get("results", []) for f in r.get("findings", [])),
            key=lambda f: SEVERITY_ORDER.index(f["severity"]),
        )
        if findings:
            lines += [
                "",
                f"### Top findings ({min(len(findings), TOP_FINDINGS)} of {len(findings)})",
                "",
                "| severity | rule | finding | where |",
                "|---|---|---|---|",
            ]
            for finding in findings[:TOP_FINDINGS]:
                location = finding["location"]
                where = location["artifact"] + (
                    f":{location['line']}" if location.get("line") else ""
                )
                if location.get("pointer"):
                    where += f" {location['pointer']}"
                lines.append(
                    f"| {finding['severity']} | {finding['rule_id']} | "
                    f"**{escape(finding['title'])}**: {escape(finding['message'])} | "
                    f"{_code(where)} |"
                )
        errors = [r for r in report.get("results", []) if r["status"] == "error"]
        if errors:
            lines += ["", "### Rules in error", ""]
            lines += [f"- {r['rule_id']}: {escape(r.get('reason'))}" for r in errors]
        return ("\n".join(lines) + "\n").encode()
