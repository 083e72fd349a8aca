"""The HTML report in a real browser: self-contained, no errors, no requests, no scripts run.

Runs headless Chromium (the one ``tests/reports/chromium.py`` finds: on PATH, or Playwright's
own; ``make test`` installs Debian's when it can and says why not when it cannot) through
Playwright, which drives that browser and downloads nothing. Screenshots go to
``test-artifacts/`` for a human to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from tests.reports.chromium import MISSING, find_chromium
from tests.reports.conftest import CRASHING, Scanned, scan_to

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = find_chromium()
PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=f"browser tests skipped: {MISSING}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def _open(browser: Any, page_path: Path, screenshot: str) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    return page, errors, requests


def test_report_opens_with_no_errors_and_no_network(browser: Any, scanned: Path) -> None:
    page, errors, requests = _open(browser, scanned / "report.html", "report.png")
    assert errors == []
    assert requests == [(scanned / "report.html").as_uri()]
    assert page.locator(".gate").inner_text().startswith("gate ")
    # Robustness curves and the membership ROC are drawn inline.
    assert page.locator("#MLA201 svg.chart").count() >= 2
    assert page.locator("#MLA301 figcaption", has_text="ROC").count() == 1
    assert page.locator("section#reproducibility").inner_text().count("sha256") >= 3
    page.close()


def test_verdict_and_contents_links_land_in_the_browser(
    browser: Any, failing: Scanned, tmp_path: Path
) -> None:
    """Clicking each link of the verdict and of the contents scrolls to an element that
    exists: a failing finding's row in its rule, an errored rule, a family's section."""
    page_path = tmp_path / "report.html"
    page_path.write_text(failing.html)
    page, errors, requests = _open(browser, page_path, "failing-report.png")
    links = page.locator("section.verdict a, nav#contents a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert "#family-artifact" in hrefs
    assert f"#{CRASHING}" in hrefs
    landed = []
    for i, href in enumerate(hrefs):
        links.nth(i).click()
        assert page.evaluate("location.hash") == href
        target = page.locator(":target")
        assert target.count() == 1, href
        landed.append(target.evaluate("e => e.closest('article, section').id"))
    assert any(href.startswith("#finding-") for href in hrefs), hrefs
    assert "MLA101" in landed  # the critical finding's row sits in its rule
    assert errors == []
    assert set(requests) == {page_path.as_uri()}  # in-page links fetch nothing
    page.close()


def test_hostile_strings_render_as_text_and_run_nothing(browser: Any, tmp_path: Path) -> None:
    frame = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0] * 10, PAYLOAD: [0.5] * 40})
    labels = [PAYLOAD, "benign"] * 20
    model = DecisionTreeClassifier(max_depth=2).fit(frame[["size"]], labels)
    joblib.dump(model, tmp_path / "model.joblib")
    data = frame.assign(**{"label": labels})
    data.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "report"
    scan_to(
        out,
        tmp_path / "model.joblib",
        "--data",
        tmp_path / "data.csv",
        "--target",
        "label",
        "--select",
        "MLA7",
        "--select",
        "MLA204",
        "--format",
        "html",
    )
    html = (out / "report.html").read_text()
    assert "&lt;script&gt;window.__pwned" in html
    page, errors, _ = _open(browser, out / "report.html", "hostile-report.png")
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('script, [onerror]').length") == 0
    assert PAYLOAD in page.locator("body").inner_text()
    assert errors == []
    page.close()
