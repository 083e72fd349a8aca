"""Rule documentation for renderers that embed it (SARIF rules, the CycloneDX model card).

A report is rendered from its JSON alone; the documentation is looked up in the rules
installed now, and a rule that is no longer installed keeps its id and name from the report.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cache

from mlaudit.core.errors import UsageError
from mlaudit.engine.registry import registered_rules
from mlaudit.reports.rule_pages import SECTION_PATTERN, rule_markdown


@dataclass(frozen=True)
class RuleDoc:
    summary: str
    what: str
    markdown: str


@cache
def rule_doc(rule_id: str) -> RuleDoc | None:
    found = next((r for r in registered_rules() if r.id == rule_id), None)
    if found is None:
        return None
    try:
        rule = found.load()
    except UsageError:
        return None
    doc = inspect.getdoc(rule) or ""
    summary, _, body = doc.partition("\n\n")
    sections = dict(zip(*[iter(SECTION_PATTERN.split(body)[1:])] * 2, strict=False))
    what = " ".join(sections.get("What it checks", summary).split())
    return RuleDoc(" ".join(summary.split()), what, rule_markdown(rule))
