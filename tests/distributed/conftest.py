"""One real Dask LocalCluster (a scheduler and two worker processes, one thread each) for the
whole test session: starting one costs seconds, and every cluster test needs the same."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    if not hasattr(os, "fork"):
        pytest.skip("the isolated worker is forked")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local
