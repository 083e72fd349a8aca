"""The sample audit in reports/sample/ (``make sample``) still reads as a current report."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from mlaudit.reports import renderer_for
from mlaudit.reports.build import read_report

SAMPLE = Path(__file__).resolve().parent.parent / "reports" / "sample"
SCHEMA = Path(__file__).resolve().parent.parent / "reports" / "report.schema.json"


def test_sample_report_validates_and_renders() -> None:
    report = read_report(SAMPLE / "report.json")
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(report)
    html = renderer_for("html").render(report).decode()
    assert "gate FAILED" in html  # the overfit demo model leaks its training rows (MLA302)
    assert (SAMPLE / "report.html").read_text().startswith("<!DOCTYPE html>")
