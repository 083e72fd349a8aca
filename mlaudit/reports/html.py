"""``report.html``: one self-contained page a person reads, rendered from the report alone.

No scripts, no external fonts, styles or images: inline CSS and inline SVG, so the file opens
offline, years later, and prints to PDF. Jinja2 autoescapes every value; the only markup not
escaped is the SVG this package draws, whose text parts are escaped where they are made.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from mlaudit.reports.charts import collect_charts, render_chart, severity_chart
from mlaudit.verdict.scoring import CauseKind, gate_causes

FAMILY_TITLES = {
    "artifact": "Artifact safety",
    "robustness": "Adversarial robustness",
    "privacy": "Privacy attacks",
    "personal-data": "Personal data",
    "code": "Code",
    "dependencies": "Dependencies",
    "data-quality": "Data quality",
    "serving": "Serving readiness",
}


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("mlaudit.reports", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["interval"] = _interval
    environment.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
    return environment


def _interval(value: Any) -> str:
    if isinstance(value, Mapping) and "estimate" in value:
        low, high = value.get("low"), value.get("high")
        if isinstance(low, int | float) and isinstance(high, int | float):
            return f"{value['estimate']:.4g} [{low:.4g}, {high:.4g}]"
        return f"{value['estimate']:.4g}"
    return str(value)


def _key_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Top-level scalars and intervals: what a reader scans before the charts."""
    shown = []
    for key, value in metrics.items():
        if isinstance(value, bool | int | float | str) or (
            isinstance(value, Mapping) and "estimate" in value
        ):
            shown.append((key.replace("_", " "), _interval(value)))
    return shown


# A fingerprint is hex, but ``mlaudit report`` re-renders archived JSON as it finds it: keeping
# only these characters keeps a space out of an id (it would break the link) and a hyphen out
# of the fingerprint part, so the "-2" of a repeated fingerprint cannot meet another's id.
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_]")


def _finding_anchors(results: list[Mapping[str, Any]]) -> list[list[str]]:
    """An element id per finding, per result: from the fingerprint, so a link to a finding
    survives a rerun; a fingerprint seen twice (a rule may repeat one) gets a counter, in
    report order, so the ids stay unique and still stable."""
    seen: Counter[str] = Counter()
    anchors = []
    for result in results:
        ids = []
        for finding in result.get("findings", []):
            base = "finding-" + _NOT_IN_ID.sub("", str(finding.get("fingerprint", "")))
            seen[base] += 1
            ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
        anchors.append(ids)
    return anchors


def _verdict(
    report: Mapping[str, Any], results: list[Mapping[str, Any]], anchors: list[list[str]]
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Each gate reason with the id of the finding or errored rule its cause names (None: it
    names neither, such as a score under the minimum), and the rules in error no cause names
    (``--allow-incomplete``), which the verdict still points to.

    A finding's cause is linked by its fingerprint: the causes are what the gate decided
    (under a baseline only new or worse findings are among them), so the link follows the
    decision rather than re-deciding. A fingerprint a rule repeats links each cause to the
    next of its rows, in report order.
    """
    by_fingerprint: dict[str, list[str]] = {}
    for result, ids in zip(results, anchors, strict=True):
        for finding, anchor in zip(result.get("findings", []), ids, strict=True):
            by_fingerprint.setdefault(str(finding.get("fingerprint")), []).append(anchor)
    errored = [r["rule_id"] for r in results if r["status"] == "error"]
    linked: list[tuple[str, str | None]] = []
    for cause in gate_causes(report.get("gate") or {}):
        target = None
        if cause.kind is CauseKind.FINDING and by_fingerprint.get(str(cause.fingerprint)):
            target = by_fingerprint[str(cause.fingerprint)].pop(0)
        elif cause.kind is CauseKind.ERROR and cause.rule_id in errored:
            target = cause.rule_id
        linked.append((cause.text, target))
    named = {target for _, target in linked}
    return linked, [rule for rule in errored if rule not in named]


def _families(
    results: list[Mapping[str, Any]], anchors: list[list[str]]
) -> list[dict[str, Any]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for result, ids in zip(results, anchors, strict=True):
        metrics = result.get("metrics") or {}
        grouped.setdefault(result["family"], []).append(
            {
                **result,
                "findings": [
                    {**finding, "anchor": anchor}
                    for finding, anchor in zip(result.get("findings", []), ids, strict=True)
                ],
                "charts": [(chart.title, render_chart(chart)) for chart in collect_charts(metrics)],
                "key_metrics": _key_metrics(metrics),
            }
        )
    ordered = [f for f in FAMILY_TITLES if f in grouped] + sorted(
        f for f in grouped if f not in FAMILY_TITLES
    )
    return [
        {
            "id": family,
            "title": FAMILY_TITLES.get(family, family),
            "results": grouped[family],
            "statuses": Counter(r["status"] for r in grouped[family]),
            "findings": sum(len(r["findings"]) for r in grouped[family]),
        }
        for family in ordered
    ]


class HtmlRenderer:
    filename = "report.html"

    def render(self, report: Mapping[str, Any]) -> bytes:
        results = list(report.get("results", []))
        anchors = _finding_anchors(results)
        reasons, unlisted_errors = _verdict(report, results, anchors)
        severities = Counter(
            finding["severity"] for result in results for finding in result.get("findings", [])
        )
        template = _environment().get_template("report.html.j2")
        page = template.render(
            report=report,
            families=_families(results, anchors),
            reasons=reasons,
            unlisted_errors=unlisted_errors,
            severity_chart=severity_chart(severities),
            severities=severities,
            statuses=Counter(result["status"] for result in results),
        )
        return page.encode()
