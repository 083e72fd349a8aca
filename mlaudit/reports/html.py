"""``report.html``: one self-contained page a person reads, rendered from the report alone.

No scripts, no external fonts, styles or images: inline CSS and inline SVG, so the file opens
offline, years later, and prints to PDF. Jinja2 autoescapes every value; the only markup not
escaped is the SVG this package draws, whose text parts are escaped where they are made.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from mlaudit.reports.charts import collect_charts, render_chart, severity_chart

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


def _families(results: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        metrics = result.get("metrics") or {}
        grouped.setdefault(result["family"], []).append(
            {
                **result,
                "charts": [(chart.title, render_chart(chart)) for chart in collect_charts(metrics)],
                "key_metrics": _key_metrics(metrics),
            }
        )
    ordered = [f for f in FAMILY_TITLES if f in grouped] + sorted(
        f for f in grouped if f not in FAMILY_TITLES
    )
    return [
        {"id": family, "title": FAMILY_TITLES.get(family, family), "results": grouped[family]}
        for family in ordered
    ]


class HtmlRenderer:
    filename = "report.html"

    def render(self, report: Mapping[str, Any]) -> bytes:
        results = list(report.get("results", []))
        severities = Counter(
            finding["severity"] for result in results for finding in result.get("findings", [])
        )
        template = _environment().get_template("report.html.j2")
        page = template.render(
            report=report,
            families=_families(results),
            severity_chart=severity_chart(severities),
            severities=severities,
            statuses=Counter(result["status"] for result in results),
        )
        return page.encode()
