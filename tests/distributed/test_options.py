"""The cluster settings: config keys, environment, and their checks (no cluster started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlaudit.config import resolve
from mlaudit.core.errors import ConfigError
from mlaudit.distributed import ClusterSettings, open_cluster


def test_cluster_keys_come_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mlaudit.toml"
    config.write_text('dask_scheduler = "tcp://scheduler:8786"\nworkers = 3\n')
    settings = resolve({}, config)
    assert (settings.dask_scheduler, settings.workers) == ("tcp://scheduler:8786", 3)
    monkeypatch.setenv("MLAUDIT_WORKERS", "5")
    assert resolve({}, config).workers == 5
    config.write_text("workers = 0\n")
    with pytest.raises(ConfigError, match="workers must be a whole number of at least 1"):
        resolve({}, config)


def test_no_cluster_is_opened_unless_asked() -> None:
    assert not ClusterSettings().wanted
    with open_cluster(ClusterSettings()) as cluster:
        assert cluster is None
