"""The HTML report's links, read with the standard library's parser (no browser needed).

The verdict links each failing finding and each errored rule; the contents list every rule
family present, with its counts; every in-page link lands on an element that exists, and every
element id is unique.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from markupsafe import escape

from mlaudit.reports.html import FAMILY_TITLES, HtmlRenderer
from mlaudit.verdict.scoring import CauseKind, GateCause
from tests.conftest import Workspace
from tests.reports.conftest import CRASHING, Scanned, failing_scan


@dataclass
class Page:
    """What the tests need from a report page: ids, in-page links by region, and rows."""

    ids: list[str] = field(default_factory=list)
    verdict_links: list[str] = field(default_factory=list)
    contents_links: list[tuple[str, str]] = field(default_factory=list)
    other_links: list[str] = field(default_factory=list)
    # Each finding row's id, and the rule article it sits in.
    finding_rule: dict[str, str] = field(default_factory=dict)
    # The cells of each row of the contents table, by the family section it links to.
    contents_rows: dict[str, list[str]] = field(default_factory=dict)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._region: str | None = None  # "verdict" or "contents"
        self._article: str | None = None
        self._link: str | None = None
        self._text: list[str] = []
        self._row: list[str] | None = None
        self._row_target: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        element_id = attributes.get("id")
        if element_id is not None:
            self.page.ids.append(element_id)
        if tag == "section" and attributes.get("class") == "verdict":
            self._region = "verdict"
        elif tag == "nav" and element_id == "contents":
            self._region = "contents"
        elif tag == "article" and element_id:
            self._article = element_id
        elif tag == "tr":
            if element_id and element_id.startswith("finding-") and self._article:
                self.page.finding_rule[element_id] = self._article
            if self._region == "contents":
                self._row, self._row_target = [], None
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "a" and (attributes.get("href") or "").startswith("#"):
            self._link, self._text = str(attributes["href"])[1:], []
            if self._region == "verdict":
                self.page.verdict_links.append(self._link)
            elif self._region != "contents":
                self.page.other_links.append(self._link)
            if self._row is not None:
                self._row_target = self._link

    def handle_data(self, data: str) -> None:
        self._text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("section", "nav"):
            self._region = None
        elif tag == "article":
            self._article = None
        elif tag == "a" and self._link is not None:
            if self._region == "contents":
                self.page.contents_links.append((self._link, "".join(self._text)))
            self._link = None
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row_target:
                self.page.contents_rows[self._row_target] = self._row
            self._row = None


def read_page(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page


def assert_links_resolve(page: Page) -> None:
    duplicates = [i for i, n in Counter(page.ids).items() if n > 1]
    assert duplicates == []
    targets = page.verdict_links + page.other_links + [t for t, _ in page.contents_links]
    assert set(targets) <= set(page.ids), set(targets) - set(page.ids)


def _findings(report: dict[str, Any], rule_id: str) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = next(
        r for r in report["results"] if r["rule_id"] == rule_id
    )["findings"]
    return findings


def test_verdict_links_each_failing_finding_and_each_errored_rule(failing: Scanned) -> None:
    page = read_page(failing.html)
    assert_links_resolve(page)
    (critical,) = [f for f in _findings(failing.report, "MLA101") if f["severity"] == "critical"]
    (low,) = _findings(failing.report, "MLA105")
    anchor = f"finding-{critical['fingerprint']}"
    assert anchor in page.verdict_links
    assert page.finding_rule[anchor] == "MLA101"
    # Under fail-on high the low MLA105 finding does not fail the gate: the verdict does not
    # list it, but its row is still an anchor a reader can link to.
    assert f"finding-{low['fingerprint']}" not in page.verdict_links
    assert page.finding_rule[f"finding-{low['fingerprint']}"] == "MLA105"
    assert CRASHING in page.verdict_links  # errored: its rule article
    assert CRASHING in page.ids
    # One link per gate reason that names a finding or an errored rule, nothing else.
    assert len(page.verdict_links) == len(failing.report["gate"]["reasons"]) == 2


def test_errored_rules_are_linked_when_allowed_not_to_gate(
    workspace: Workspace, tmp_path: Path
) -> None:
    scanned = failing_scan(tmp_path / "report", workspace, "--allow-incomplete")
    assert not any(CRASHING in reason for reason in scanned.report["gate"]["reasons"])
    page = read_page(scanned.html)
    assert_links_resolve(page)
    assert CRASHING in page.verdict_links
    assert "did not complete" in scanned.html


def test_contents_lists_each_family_with_counts(scanned_report: dict[str, Any]) -> None:
    page = read_page(HtmlRenderer().render(scanned_report).decode())
    assert_links_resolve(page)
    families = Counter(r["family"] for r in scanned_report["results"])
    assert len(families) >= 4  # artifact, robustness, privacy, data quality
    listed = {target: text for target, text in page.contents_links}
    for family, rules in families.items():
        target = f"family-{family}"
        assert listed[target] == FAMILY_TITLES[family]
        members = [r for r in scanned_report["results"] if r["family"] == family]
        statuses = Counter(r["status"] for r in members)
        findings = sum(len(r["findings"]) for r in members)
        assert page.contents_rows[target] == [
            FAMILY_TITLES[family], str(rules), *(str(statuses[s]) for s in
                                                 ("passed", "failed", "skipped", "error")),
            str(findings),
        ]
    family_links = [t for t, _ in page.contents_links if t.startswith("family-")]
    assert sorted(family_links) == sorted(f"family-{f}" for f in families)
    assert "reproducibility" in listed


def test_anchors_are_stable_and_unique_for_repeated_fingerprints(failing: Scanned) -> None:
    """A fingerprint seen twice gets a counter; the gate reason for each copy links to its own
    row, and the ids do not change from one rendering to the next."""
    report = copy.deepcopy(failing.report)
    mla101 = next(r for r in report["results"] if r["rule_id"] == "MLA101")
    (critical,) = [f for f in mla101["findings"] if f["severity"] == "critical"]
    mla101["findings"].append(copy.deepcopy(critical))
    (cause,) = [c for c in report["gate"]["causes"] if c["fingerprint"] == critical["fingerprint"]]
    report["gate"]["reasons"].append(cause["text"])
    report["gate"]["causes"].append(cause)
    html = HtmlRenderer().render(report).decode()
    page = read_page(html)
    assert_links_resolve(page)
    anchor = f"finding-{critical['fingerprint']}"
    assert {anchor, f"{anchor}-2"} <= set(page.verdict_links)
    assert html == HtmlRenderer().render(copy.deepcopy(report)).decode()


def test_reasons_that_name_no_finding_are_text(failing: Scanned) -> None:
    """A score under the minimum, or a finding a baseline excused (absent from the reasons),
    gets no link; a finding's reason is linked only while it is among the gate's reasons."""
    report = copy.deepcopy(failing.report)
    report["gate"]["reasons"] = ["score 59 is under the minimum 70"]
    report["gate"]["causes"] = [
        GateCause(CauseKind.SCORE, "score 59 is under the minimum 70").document()
    ]
    html = HtmlRenderer().render(report).decode()
    page = read_page(html)
    assert_links_resolve(page)
    assert "<li>score 59 is under the minimum 70</li>" in html
    assert page.verdict_links == [CRASHING]  # in error still, though no reason names it now


def test_hostile_fingerprints_cannot_break_ids(failing: Scanned) -> None:
    """``mlaudit report`` re-renders archived JSON as found: odd fingerprints still give
    unique ids without spaces, and the links still land."""
    report = copy.deepcopy(failing.report)
    findings = next(r for r in report["results"] if r["rule_id"] == "MLA101")["findings"]
    findings[0]["fingerprint"] = 'a b"><script>'
    findings.append({**copy.deepcopy(findings[0]), "fingerprint": "ab-2"})
    findings.append({**copy.deepcopy(findings[0]), "fingerprint": "ab"})
    html = HtmlRenderer().render(report).decode()
    page = read_page(html)
    assert_links_resolve(page)
    assert "<script>" not in html
    assert not any(" " in element_id for element_id in page.ids)


def test_links_follow_the_causes_not_the_wording(failing: Scanned) -> None:
    """The reasons' words may change: the links come from the causes' fingerprint and rule.
    A report without causes (schema before 1.3.0) shows its reasons, linking none of them."""
    report = copy.deepcopy(failing.report)
    report["gate"]["causes"] = [
        {**cause, "text": f"reworded {number}"}
        for number, cause in enumerate(report["gate"]["causes"])
    ]
    page = read_page(HtmlRenderer().render(report).decode())
    assert page.verdict_links == read_page(failing.html).verdict_links
    del report["gate"]["causes"]
    html = HtmlRenderer().render(report).decode()
    page = read_page(html)
    assert_links_resolve(page)
    assert page.verdict_links == [CRASHING]  # in error, though no cause names it
    for reason in failing.report["gate"]["reasons"]:
        assert f"<li>{escape(reason)}</li>" in html
