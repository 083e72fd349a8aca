"""``report.json``: the full report, UTF-8, two-space indent, key order as built."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class JsonRenderer:
    filename = "report.json"

    def render(self, report: Mapping[str, Any]) -> bytes:
        return (json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
