"""The presidio engine is built once per test session (about four seconds) and shared."""

from __future__ import annotations

import pytest

from mlaudit.pii.analyzer import PiiEngine, get_engine


@pytest.fixture(scope="session")
def engine() -> PiiEngine:
    return get_engine()
