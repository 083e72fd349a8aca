"""Renderers: one per output format, each turning the report document into file bytes.

The JSON document is the source of truth; every other format is rendered from it alone, so an
archived report can be re-rendered later without the model or the data.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from mlaudit.config import FORMATS


class Renderer(Protocol):
    filename: str

    def render(self, report: Mapping[str, Any]) -> bytes: ...


_RENDERERS = {
    "json": "mlaudit.reports.json:JsonRenderer",
    "html": "mlaudit.reports.html:HtmlRenderer",
    "sarif": "mlaudit.reports.sarif:SarifRenderer",
    "junit": "mlaudit.reports.junit:JunitRenderer",
    "md": "mlaudit.reports.markdown:MarkdownRenderer",
    "cyclonedx": "mlaudit.reports.cyclonedx:CycloneDxRenderer",
}
if set(_RENDERERS) != set(FORMATS):  # a new format needs both
    raise ImportError("mlaudit.config.FORMATS and the renderers disagree")
__all__ = ["FORMATS", "Renderer", "renderer_for"]


def renderer_for(output_format: str) -> Renderer:
    module_name, _, class_name = _RENDERERS[output_format].partition(":")
    renderer: Renderer = getattr(importlib.import_module(module_name), class_name)()
    return renderer
